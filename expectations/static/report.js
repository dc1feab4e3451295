/* The report's only script: sortable and searchable tables, and the national facility search.
   Static files, no library, no network: it works from a shared folder (file://) or any server. */
(function () {
  "use strict";
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) raw = cell.textContent.trim();
    var n = Number(raw);
    return raw !== "" && !isNaN(n) ? n : raw.toLowerCase();
  }
  function sortBy(table, index, th) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index]), y = key(b.cells[index]);
      var order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return ascending ? order : -order;
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (r) { fragment.appendChild(r); });
    body.appendChild(fragment);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("thead th").forEach(function (th, i) {
      th.tabIndex = 0;
      th.setAttribute("aria-sort", "none");
      th.addEventListener("click", function () { sortBy(table, i, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, i, th); });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    input.addEventListener("input", function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.hidden = q !== "" && r.textContent.toLowerCase().indexOf(q) < 0;
      });
    });
  });
  /* National search over every facility: the index (one script, ~25 bytes a facility) is loaded
     only when someone types, so the national page stays small for 13,000 facilities. */
  var search = document.getElementById("facility-search");
  if (search) {
    var results = document.getElementById("facility-results");
    var show = function () {
      var q = search.value.trim().toLowerCase();
      results.innerHTML = "";
      if (!q || !window.HB_FACILITIES) return;
      var shown = 0;
      for (var i = 0; i < window.HB_FACILITIES.length && shown < 50; i++) {
        var f = window.HB_FACILITIES[i];
        if (f[0].toLowerCase().indexOf(q) < 0 && f[1].toLowerCase().indexOf(q) < 0) continue;
        var li = document.createElement("li");
        var a = document.createElement("a");
        a.href = search.getAttribute("data-base") + "facility/" + f[0] + ".html";
        a.textContent = f[0] + " — " + f[1];
        li.appendChild(a);
        results.appendChild(li);
        shown++;
      }
    };
    search.addEventListener("input", function () {
      if (window.HB_FACILITIES) return show();
      if (document.getElementById("facility-index")) return;
      var s = document.createElement("script");
      s.id = "facility-index";
      s.src = search.getAttribute("data-index");
      s.onload = show;
      document.head.appendChild(s);
    });
  }
})();
