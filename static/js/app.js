// Small behaviours that need no inline script (the Content Security Policy forbids it).
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-autosubmit]");
  if (select && select.form) select.form.requestSubmit();
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// Rubric form: "Add a criterion" copies the formset's empty form from its <template>.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-formset-add]");
  if (!button) return;
  const prefix = button.dataset.formsetAdd;
  const total = document.getElementById(`id_${prefix}-TOTAL_FORMS`);
  const template = document.getElementById(`${prefix}-empty`);
  const rows = document.querySelector(`[data-formset-rows="${prefix}"]`);
  if (!total || !template || !rows) return;
  const index = Number(total.value);
  const html = template.innerHTML.replaceAll("__prefix__", String(index));
  rows.insertAdjacentHTML("beforeend", html);
  total.value = String(index + 1);
  const first = rows.lastElementChild && rows.lastElementChild.querySelector("input, textarea");
  if (first) first.focus();
});

// Review page shortcuts: a agrees, o focuses the override, n / p move through the queue.
document.addEventListener("keydown", (event) => {
  const page = document.querySelector("[data-review-shortcuts]");
  if (!page || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target.closest("input, textarea, select, [contenteditable]")) return;
  const go = (url) => { if (url) window.location.assign(url); };
  if (event.key === "a") {
    const agree = document.getElementById("agree-button");
    if (agree) { event.preventDefault(); agree.click(); }
  } else if (event.key === "o") {
    const field = document.querySelector("[data-shortcut-override]");
    if (field) { event.preventDefault(); field.focus(); if (field.select) field.select(); }
  } else if (event.key === "n") {
    go(page.dataset.nextUrl);
  } else if (event.key === "p") {
    go(page.dataset.prevUrl);
  }
});
