// Progressive enhancement only: every page works without this file.
// After htmx swaps content in, move focus where a keyboard user expects it: to an error summary or
// a field marked autofocus in the new content, else (after a boosted navigation) to the main region.
function swappedRegion(target) {
  if (!(target instanceof Element)) return document.body;
  if (target.isConnected) return target;
  // An outerHTML swap replaced the target: its successor carries the same id.
  return (target.id && document.getElementById(target.id)) || document.body;
}

document.addEventListener("htmx:after:swap", (event) => {
  const region = swappedRegion(event.detail?.ctx?.target);
  const focusable = region.matches("[autofocus]") ? region : region.querySelector("[autofocus]");
  if (focusable) {
    focusable.focus();
    return;
  }
  if (region === document.body) {
    const main = document.getElementById("main");
    if (main) main.focus({ preventScroll: true });
  }
});
