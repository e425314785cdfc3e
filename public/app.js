// Progressive enhancement only: every page works without this file.
// After htmx swaps content in, move focus where a keyboard user expects it: to an error summary or
// a field marked autofocus in the new content, else (after a boosted navigation) to the main region.
document.addEventListener("htmx:after:swap", (event) => {
  const target = event.detail?.ctx?.target || document.body;
  const focusable = target.querySelector("[autofocus]");
  if (focusable) {
    focusable.focus();
    return;
  }
  if (target === document.body) {
    const main = document.getElementById("main");
    if (main) main.focus({ preventScroll: true });
  }
});
