// riskpipe workbench: small enhancements, served from /static (the CSP allows 'self' scripts only).
// Pages work without it: the server refuses a missing or unconfirmed positive outcome anyway.
(function () {
  "use strict";
  var POSITIVE = ["fentanyl", "precursor", "pill_press"];

  // An outcome form: a positive choice shows and requires the examiner and the confirmation,
  // and the hint says what the next retrain will learn from it.
  function syncOutcome(form) {
    var select = form.querySelector("select[name=outcome]");
    if (!select) return;
    var positive = POSITIVE.indexOf(select.value) >= 0;
    form.classList.toggle("is-positive", positive);
    form.classList.toggle("is-negative", select.value !== "" && !positive);
    form.querySelectorAll(".confirm-fields input").forEach(function (input) { input.required = positive; });
  }
  document.addEventListener("change", function (e) {
    var form = e.target.closest ? e.target.closest("form") : null;
    if (!form) return;
    if (e.target.name === "outcome") syncOutcome(form);
    if (e.target.name === "exam_date" && e.target.value) {
      form.querySelectorAll(".exam-day").forEach(function (s) { s.textContent = e.target.value; });
    }
  });
  document.querySelectorAll("form").forEach(syncOutcome); // a restored page keeps its choices

  // The list: j/k or arrow keys move a focus row, Enter opens it, o goes to its outcome.
  var table = document.getElementById("list");
  if (!table) return;
  var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-sid]"));
  var at = -1;
  function focusRow(i) {
    if (!rows.length) return;
    i = Math.max(0, Math.min(rows.length - 1, i));
    if (at >= 0 && rows[at]) rows[at].classList.remove("focus");
    at = i;
    rows[at].classList.add("focus");
    rows[at].setAttribute("aria-current", "true");
    rows[at].scrollIntoView({ block: "nearest" });
  }
  table.addEventListener("click", function (e) {
    var tr = e.target.closest("tr[data-sid]");
    if (tr) focusRow(rows.indexOf(tr));
  });
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var t = e.target;
    var tag = t && t.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (t && t.isContentEditable)) return; // typing
    if (e.key === "j" || e.key === "ArrowDown") { focusRow(at + 1); e.preventDefault(); }
    else if (e.key === "k" || e.key === "ArrowUp") { focusRow(at < 0 ? 0 : at - 1); e.preventDefault(); }
    else if (e.key === "Enter" && at >= 0 && tag !== "A" && tag !== "BUTTON" && tag !== "SUMMARY") { // those act themselves
      var link = rows[at].querySelector("a.sid");
      if (link) { window.location.href = link.href; e.preventDefault(); }
    } else if (e.key === "o" && at >= 0) {
      var select = rows[at].querySelector("select[name=outcome]");
      if (select) { select.focus(); e.preventDefault(); }
    }
  });
})();
