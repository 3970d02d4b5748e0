// Comment Line console: small enhancements; every page works without them.
(function () {
  "use strict";

  function ready(fn) { if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn); }

  ready(function () {
    // Inbox: tick all, count ticked, and keyboard moves between comments.
    var all = document.getElementById("tick-all");
    var boxes = Array.prototype.slice.call(document.querySelectorAll('.comments input[name="ref"]'));
    var ticked = document.getElementById("ticked");
    function count() {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      if (ticked) ticked.textContent = n ? n + " ticked" : "";
      if (all) all.checked = n > 0 && n === boxes.length;
    }
    if (all) all.addEventListener("change", function () { boxes.forEach(function (b) { b.checked = all.checked; }); count(); });
    boxes.forEach(function (b) { b.addEventListener("change", count); });

    var rows = Array.prototype.slice.call(document.querySelectorAll(".comments .comment"));
    function current() { return rows.indexOf(document.activeElement && document.activeElement.closest ? document.activeElement.closest(".comment") : null); }
    document.addEventListener("keydown", function (e) {
      var tag = (e.target.tagName || "").toLowerCase();
      if (e.ctrlKey || e.metaKey || e.altKey || tag === "input" || tag === "textarea" || tag === "select") {
        if (e.key === "Escape" && tag !== "body") e.target.blur();
        return;
      }
      var search = document.getElementById("search");
      if (e.key === "/" && search) { e.preventDefault(); search.focus(); search.select(); return; }
      if (!rows.length) return;
      var i = current();
      if (e.key === "j" || e.key === "k") {
        e.preventDefault();
        var next = i < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, i + (e.key === "j" ? 1 : -1)));
        rows[next].focus();
        rows[next].scrollIntoView({ block: "nearest" });
      } else if (i >= 0 && e.key === "x") {
        e.preventDefault();
        var box = rows[i].querySelector('input[name="ref"]');
        box.checked = !box.checked; count();
      } else if (i >= 0 && e.key === "p") {
        e.preventDefault();
        var audio = rows[i].querySelector("audio");
        if (audio) { if (audio.paused) audio.play(); else audio.pause(); }
      } else if (i >= 0 && e.key === "Enter" && e.target === rows[i]) {
        window.location.href = rows[i].getAttribute("data-href");
      }
    });

    // Counts: refresh the numbers and chart while the page is open and visible.
    var live = document.getElementById("counts-live");
    if (live && live.getAttribute("data-live-url")) {
      var every = parseInt(live.getAttribute("data-every"), 10) * 1000 || 30000;
      setInterval(function () {
        if (document.hidden) return;
        fetch(live.getAttribute("data-live-url"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
          .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
          .then(function (html) { live.innerHTML = html; })
          .catch(function () { /* keep what is shown; try again next time */ });
      }, every);
    }
    var print = document.getElementById("print");
    if (print) print.addEventListener("click", function () { window.print(); });
  });
})();
