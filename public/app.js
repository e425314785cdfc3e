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

// The import results: ticking a row says at once how many entries are selected (the saved choices of
// other pages plus the ticks on this one) and what "Import" will do. The server says the same after
// every submit, so without JavaScript the count is right on each page it sends.
function importSelectionCount(form) {
  const status = document.getElementById("selection-status");
  if (!status?.hasAttribute("data-selected-elsewhere")) return null;
  const elsewhere = Number(status.getAttribute("data-selected-elsewhere")) || 0;
  const ticked = form.querySelectorAll('input[name="pick"]:checked').length;
  return { status, elsewhere, total: elsewhere + ticked };
}

function showImportSelection(form) {
  const count = importSelectionCount(form);
  if (!count) return;
  const { status, elsewhere, total } = count;
  // Unchanged: leave the live region alone, so nothing is announced twice.
  if (status.getAttribute("data-selected") === String(total)) return;
  status.setAttribute("data-selected", String(total));
  const n = (value) => value.toLocaleString("en-US");
  status.replaceChildren();
  if (total === 0) {
    status.textContent = "Nothing selected yet.";
  } else {
    const strong = document.createElement("strong");
    strong.textContent = `${n(total)} ${total === 1 ? "entry" : "entries"} selected`;
    status.append(strong, elsewhere > 0 ? `, ${n(elsewhere)} of them on other pages.` : ".");
  }
  const submit = document.getElementById("import-submit");
  if (submit) submit.textContent = total > 0 ? `Import ${n(total)} selected` : "Import selected";
}

document.addEventListener("change", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.name !== "pick") return;
  const form = input.closest("#import-form");
  if (form) showImportSelection(form);
});

// A page restored from the back/forward cache, or whose ticks the browser restored, says so too.
window.addEventListener("pageshow", () => {
  const form = document.getElementById("import-form");
  if (form) showImportSelection(form);
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
