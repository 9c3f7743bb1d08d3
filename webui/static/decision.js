/* Decision tables: dmn-js Modeler (from npm, served as is); save lints and deploys with the process. */
(function () {
  "use strict";
  var el = document.getElementById("dmn");
  if (!el || !window.DmnJS || !window.fetch) { return; }
  var statusEl = document.getElementById("modeler-status");
  var problemsEl = document.getElementById("problems");
  var list = document.getElementById("problem-list");
  var modeler = new window.DmnJS({ container: el, common: { keyboard: { bindTo: window } } });
  window.opsflowDmn = modeler;

  function say(text, kind) { statusEl.hidden = !text; statusEl.textContent = text || ""; statusEl.className = "note " + (kind || ""); }

  function openTable() {
    var views = modeler.getViews();
    for (var i = 0; i < views.length; i++) {
      if (views[i].type === "decisionTable") { return modeler.open(views[i]); }
    }
    return Promise.resolve();
  }

  fetch(el.dataset.xml, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
    .then(function (xml) { return modeler.importXML(xml); })
    .then(openTable)
    .then(function () { el.dataset.ready = "1"; })
    .catch(function (err) { el.dataset.ready = "error"; say("import: " + (err.message || err), "error"); });

  document.getElementById("save").addEventListener("click", function () {
    modeler.saveXML({ format: true }).then(function (result) {
      var body = new FormData();
      body.append("xml", result.xml);
      body.append("csrf_token", el.dataset.csrf);
      return fetch(el.dataset.save, { method: "POST", body: body, credentials: "same-origin",
                                      headers: { "X-CSRFToken": el.dataset.csrf } });
    }).then(function (r) { return r.json(); }).then(function (data) {
      list.textContent = "";
      (data.problems || []).forEach(function (p) {
        var li = document.createElement("li");
        li.textContent = (p.file || "") + (p.line ? ":" + p.line : "") + " " + p.message;
        list.appendChild(li);
      });
      problemsEl.hidden = !(data.problems || []).length;
      var mine = (data.deployed || [])[0];
      say(data.ok && mine ? mine.process_id + " v" + mine.version : "", "ok");
      el.dataset.saved = data.ok ? String(mine ? mine.version : "") : "problems";
    }).catch(function (err) { say(String(err), "error"); });
  });
})();
