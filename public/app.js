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

// ——— Select all (Users list, issue 28): the header checkbox ticks every row's box of its form ———
// Without JavaScript the checkbox stays hidden and a "select all" link reloads the page instead.
function rowBoxes(all) {
  return [
    ...document.querySelectorAll(
      `input[type="checkbox"][name="${all.dataset.selectAll}"][form="${all.dataset.form}"]`,
    ),
  ];
}

function showSelectAll(all) {
  const boxes = rowBoxes(all);
  const ticked = boxes.filter((box) => box.checked).length;
  all.hidden = false;
  all.checked = ticked > 0 && ticked === boxes.length;
  all.indeterminate = ticked > 0 && ticked < boxes.length;
}

function showSelectAlls() {
  for (const all of document.querySelectorAll("input[data-select-all]")) showSelectAll(all);
}

document.addEventListener("change", (event) => {
  const box = event.target;
  if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
  if (box.dataset.selectAll !== undefined) {
    for (const row of rowBoxes(box)) row.checked = box.checked;
    return;
  }
  showSelectAlls();
});
document.addEventListener("DOMContentLoaded", showSelectAlls);
document.addEventListener("htmx:after:swap", showSelectAlls);
// ——— end of select all ———
