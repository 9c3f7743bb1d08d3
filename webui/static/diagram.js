/* The case diagram: bpmn-js NavigatedViewer (from npm, served as is) with the case's progress marked. */
(function () {
  "use strict";
  var el = document.getElementById("diagram");
  if (!el || !window.BpmnJS || !window.fetch) { return; }
  var viewer = new window.BpmnJS({ container: el });
  fetch(el.dataset.xml, { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
    .then(function (xml) { return viewer.importXML(xml); })
    .then(function () {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      canvas.zoom("fit-viewport");
      ["completed", "active", "overdue"].forEach(function (state) {
        (el.dataset[state] || "").split(" ").forEach(function (id) {
          if (id && registry.get(id)) { canvas.addMarker(id, "of-" + state); }
        });
      });
      el.dataset.ready = "1";
    })
    .catch(function (err) {
      el.dataset.ready = "error";
      el.textContent = "diagram: " + err;
    });
})();
