// survbench leaderboard site: sortable tables and row filters. Hand-written, no library, nothing fetched.
//
// Sorting: every table.sortable has a <button class="sort"> in each column header. The first click sorts the
// body rows by that column's data-value, largest first; the next click smallest first. Numbers compare as
// numbers, other values as text; an empty data-value (n/a) always goes last. The header gets aria-sort.
// Filters: form.filters holds one checkbox per method family (name="family") and one that hides the methods
// reading reference contours at test time (name="mask"); they set the hidden attribute on board rows.
(function () {
  "use strict";

  function cellValue(row, column) {
    var cell = row.children[column];
    if (!cell) return "";
    var v = cell.getAttribute("data-value");
    return v === null ? cell.textContent.trim() : v;
  }

  function compare(a, b, direction) {
    if (a === "" && b === "") return 0;
    if (a === "") return 1;  // n/a last, whichever the direction
    if (b === "") return -1;
    var x = Number(a), y = Number(b);
    var order = (!isNaN(x) && !isNaN(y)) ? (x < y ? -1 : x > y ? 1 : 0) : a.localeCompare(b);
    return direction === "descending" ? -order : order;
  }

  function sortBy(table, th) {
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var direction = th.getAttribute("aria-sort") === "descending" ? "ascending" : "descending";
    var heads = table.querySelectorAll("thead th");
    for (var i = 0; i < heads.length; i++) heads[i].removeAttribute("aria-sort");
    th.setAttribute("aria-sort", direction);
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, index) { row._order = index; });
    rows.sort(function (r, s) {
      return compare(cellValue(r, column), cellValue(s, column), direction) || r._order - s._order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  function applyFilters(form) {
    var shown = {};
    var boxes = form.querySelectorAll('input[name="family"]');
    for (var i = 0; i < boxes.length; i++) shown[boxes[i].value] = boxes[i].checked;
    var mask = form.querySelector('input[name="mask"]');
    var hideMask = mask !== null && mask.checked;
    var rows = document.querySelectorAll("table.board tbody tr");
    var visible = 0;
    for (var j = 0; j < rows.length; j++) {
      var row = rows[j];
      var family = row.getAttribute("data-family");
      var hide = (family in shown && !shown[family]) || (hideMask && row.getAttribute("data-mask") === "yes");
      if (hide) row.setAttribute("hidden", ""); else { row.removeAttribute("hidden"); visible++; }
    }
    var status = form.querySelector(".filter-status");
    if (status) status.textContent = visible + " of " + rows.length + " rows shown";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var buttons = document.querySelectorAll("table.sortable thead button.sort");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        var th = event.currentTarget.closest("th");
        sortBy(th.closest("table"), th);
      });
    }
    var form = document.querySelector("form.filters");
    if (form) {
      form.addEventListener("change", function () { applyFilters(form); });
      form.addEventListener("submit", function (event) { event.preventDefault(); });
      applyFilters(form);
    }
  });
})();
