// The report's only script: tooltips over the timeline's bars and the graph's nodes, and the
// history's filter. No framework, nothing fetched: the data is the JSON block in the page.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var tip = document.getElementById("tip");

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function show(html, ev) {
    tip.innerHTML = html;
    tip.style.display = "block";
    move(ev);
  }
  function move(ev) {
    var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) x = ev.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = ev.clientY - h - 14;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  }
  function hide() { tip.style.display = "none"; }

  function barHtml(b) {
    var html = "<b>" + esc(b.kind === "undo" ? "undo " : "") + esc(b.op + "/" + b.step) + "</b>" +
      "<div><span class='k'>key</span> " + esc(b.key || "") + "</div>" +
      "<div><span class='k'>took</span> " + (b.end - b.start).toFixed(3) + "s · <span class='k'>status</span> " +
      esc(b.status) + " · <span class='k'>run</span> " + esc(b.run) + "</div>";
    var outs = b.outputs || {};
    var names = Object.keys(outs);
    if (names.length) {
      html += "<pre>" + names.map(function (k) { return esc(k) + " = " + esc(JSON.stringify(outs[k])); }).join("\n") + "</pre>";
    }
    if (b.note) html += "<div><span class='k'>note</span> " + esc(b.note) + "</div>";
    if (b.error) html += "<div class='err'>" + esc(b.error) + "</div>";
    return html;
  }
  function nodeHtml(n) {
    var deps = data.edges.filter(function (e) { return e[1] === n.id; }).map(function (e) { return e[0]; });
    return "<b>" + esc(n.id) + "</b>" + (n.title ? "<div>" + esc(n.title) + "</div>" : "") +
      "<div><span class='k'>phase</span> " + esc(n.phase) + " · <span class='k'>steps</span> " + n.steps +
      " · <span class='k'>state</span> " + esc(n.state) + "</div>" +
      (deps.length ? "<div><span class='k'>after</span> " + esc(deps.join(", ")) + "</div>" : "");
  }
  function markHtml(m) {
    return "<b>" + esc(m.label) + "</b>" + (m.detail ? "<div class='err'>" + esc(m.detail) + "</div>" : "");
  }

  function hover(selector, list, html) {
    document.querySelectorAll(selector).forEach(function (el) {
      var item = list[Number(el.getAttribute("data-i"))];
      el.addEventListener("mouseenter", function (ev) { show(html(item), ev); });
      el.addEventListener("mousemove", move);
      el.addEventListener("mouseleave", hide);
    });
  }
  hover(".bar", data.bars, barHtml);
  hover(".node", data.nodes, nodeHtml);
  hover(".mark", data.markers, markHtml);

  var filter = document.getElementById("history-filter");
  var type = document.getElementById("history-type");
  var count = document.getElementById("history-count");
  function refilter() {
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var kind = type.value, shown = 0;
    document.querySelectorAll("#history tbody tr").forEach(function (tr) {
      var text = tr.textContent.toLowerCase();
      var ok = (!kind || tr.getAttribute("data-type") === kind) &&
        words.every(function (w) { return text.indexOf(w) >= 0; });
      tr.style.display = ok ? "" : "none";
      if (ok) shown++;
    });
    count.textContent = shown + " of " + data.history.length + " events";
  }
  if (filter && type) {
    filter.addEventListener("input", refilter);
    type.addEventListener("change", refilter);
    refilter();
  }
})();
