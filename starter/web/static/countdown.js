// Live countdowns for the 待办 page: every [data-due] cell shows the time left, or how late it is.
(function () {
  "use strict";
  function span(ms) {
    var s = Math.floor(ms / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (d ? d + "天" : "") + (d || h ? h + "小时" : "") + m + "分" + sec + "秒";
  }
  function tick() {
    var now = Date.now();
    var cells = document.querySelectorAll("[data-due]");
    for (var i = 0; i < cells.length; i++) {
      var cell = cells[i];
      var due = Date.parse(cell.getAttribute("data-due"));
      if (isNaN(due)) continue;
      var left = due - now;
      // R-DRILL: a drill's time is told in plan time (real time × its speedup).
      var speedup = parseFloat(cell.getAttribute("data-speedup") || "");
      var scale = speedup > 0 ? speedup : 1;
      var note = speedup > 0 ? "（按演练时间）" : "";
      if (left > 0) {
        cell.textContent = "还剩" + span(left * scale) + note;
      } else {
        cell.textContent = "已逾期" + span(-left * scale) + note;
        cell.className += " late";  // coloured by style.css (the CSP allows no inline styles)
        if (cell.parentNode) cell.parentNode.className += " overdue";
        cell.removeAttribute("data-due");
      }
    }
  }
  tick();
  setInterval(tick, 1000);
})();
