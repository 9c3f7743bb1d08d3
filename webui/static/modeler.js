/* The process modeler: bpmn-js Modeler (from npm, served as is) with OpsFlow's own small properties
   panel for user tasks (role lane, form, due time, assignee, separation of duties, escalation), written
   as spiffworkflow:properties extension elements; save lints on the server and deploys when clean. */
(function () {
  "use strict";
  var el = document.getElementById("canvas");
  if (!el || !window.BpmnJS || !window.fetch) { return; }
  var statusEl = document.getElementById("modeler-status");
  var problemsEl = document.getElementById("problems");
  var problemList = document.getElementById("problem-list");
  var form = document.getElementById("props-form");
  var empty = document.getElementById("props-empty");
  var laneSelect = document.getElementById("p-lane");
  var roles = JSON.parse(document.getElementById("roles-data").textContent || "[]");
  var modeler, selected = null, marked = [];
  var HUMAN = ["bpmn:UserTask", "bpmn:ManualTask"];

  function say(text, kind) {
    statusEl.hidden = !text;
    statusEl.textContent = text || "";
    statusEl.className = "note " + (kind || "");
  }

  roles.forEach(function (r) {
    var o = document.createElement("option");
    o.value = r[0]; o.textContent = r[1] + " (" + r[0] + ")";
    laneSelect.appendChild(o);
  });

  // extension properties ----------------------------------------------------------------------
  function propsOf(bo) {
    var ext = bo.extensionElements;
    var values = (ext && ext.get("values")) || [];
    for (var i = 0; i < values.length; i++) {
      if (values[i].$instanceOf && values[i].$instanceOf("spiffworkflow:Properties")) { return values[i]; }
    }
    return null;
  }

  function readProp(bo, name) {
    var props = propsOf(bo);
    var list = (props && props.get("properties")) || [];
    for (var i = 0; i < list.length; i++) { if (list[i].name === name) { return list[i].value || ""; } }
    return "";
  }

  function writeProp(element, name, value) {
    var moddle = modeler.get("moddle"), modeling = modeler.get("modeling");
    var bo = element.businessObject;
    var ext = bo.extensionElements;
    if (!ext) {
      ext = moddle.create("bpmn:ExtensionElements", { values: [] });
      ext.$parent = bo;
      modeling.updateProperties(element, { extensionElements: ext });
    }
    var props = propsOf(bo);
    if (!props) {
      if (!value) { return; }
      props = moddle.create("spiffworkflow:Properties", { properties: [] });
      props.$parent = ext;
      modeling.updateModdleProperties(element, ext, { values: ext.get("values").concat([props]) });
    }
    var list = props.get("properties"), existing = null;
    list.forEach(function (p) { if (p.name === name) { existing = p; } });
    if (!value && existing) {
      modeling.updateModdleProperties(element, props, { properties: list.filter(function (p) { return p !== existing; }) });
    } else if (value && existing) {
      modeling.updateModdleProperties(element, existing, { value: value });
    } else if (value) {
      var created = moddle.create("spiffworkflow:Property", { name: name, value: value });
      created.$parent = props;
      modeling.updateModdleProperties(element, props, { properties: list.concat([created]) });
    }
  }

  // lanes ---------------------------------------------------------------------------------------
  function roleMatches(laneName, key) {
    var name = (laneName || "").trim();
    if (name === key) { return true; }
    return roles.some(function (r) { return r[0] === key && r[1] === name; });
  }

  function lanes() {
    return modeler.get("elementRegistry").filter(function (e) { return e.type === "bpmn:Lane"; });
  }

  function laneOf(element) {
    var found = null;
    lanes().forEach(function (lane) {
      var refs = lane.businessObject.get("flowNodeRef") || [];
      if (refs.indexOf(element.businessObject) >= 0) { found = lane; }
    });
    return found;
  }

  function roleOfLane(lane) {
    if (!lane) { return ""; }
    var name = (lane.businessObject.name || "").trim();
    for (var i = 0; i < roles.length; i++) {
      if (roles[i][0] === name || roles[i][1] === name) { return roles[i][0]; }
    }
    return name;
  }

  function moveToRole(element, key) {
    var modeling = modeler.get("modeling");
    var target = null;
    lanes().forEach(function (lane) { if (!target && roleMatches(lane.businessObject.name, key)) { target = lane; } });
    if (!target) {
      var participant = element.parent && element.parent.type === "bpmn:Participant" ? element.parent : null;
      if (!participant) {
        var current = laneOf(element);
        participant = current ? current.parent : null;
        while (participant && participant.type === "bpmn:Lane") { participant = participant.parent; }
      }
      if (!participant || participant.type !== "bpmn:Participant") {
        say(el.dataset.noPool || "This diagram has no pool: draw a pool with lanes first.", "error");
        return;
      }
      target = modeling.addLane(participant, "bottom");
      modeling.updateProperties(target, { name: key });
    }
    var laneMid = target.y + target.height / 2, shapeMid = element.y + element.height / 2;
    var dx = 0;
    if (element.x < target.x + 40) { dx = target.x + 40 - element.x; }
    modeling.moveShape(element, { x: dx, y: Math.round(laneMid - shapeMid) });
  }

  // panel ---------------------------------------------------------------------------------------
  function show(element) {
    selected = element && HUMAN.indexOf(element.type) >= 0 ? element : null;
    form.hidden = !selected;
    empty.hidden = !!selected;
    if (!selected) { return; }
    var bo = selected.businessObject;
    document.getElementById("props-id").textContent = bo.id + " · " + selected.type.replace("bpmn:", "");
    document.getElementById("p-name").value = bo.name || "";
    var role = roleOfLane(laneOf(selected));
    if (role && !Array.prototype.some.call(laneSelect.options, function (o) { return o.value === role; })) {
      var o = document.createElement("option"); o.value = role; o.textContent = role; laneSelect.appendChild(o);
    }
    laneSelect.value = role;
    form.querySelectorAll("[data-prop]").forEach(function (input) {
      var value = readProp(bo, input.dataset.prop);
      if (input.tagName === "SELECT" && value &&
          !Array.prototype.some.call(input.options, function (o) { return o.value === value; })) {
        var extra = document.createElement("option"); extra.value = value; extra.textContent = value;
        input.appendChild(extra);
      }
      input.value = value;
    });
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); });
  document.getElementById("p-name").addEventListener("change", function (e) {
    if (selected) { modeler.get("modeling").updateProperties(selected, { name: e.target.value }); }
  });
  laneSelect.addEventListener("change", function (e) {
    if (selected && e.target.value) { moveToRole(selected, e.target.value); }
  });
  form.querySelectorAll("[data-prop]").forEach(function (input) {
    input.addEventListener("change", function () {
      if (selected) { writeProp(selected, input.dataset.prop, input.value.trim()); }
    });
  });

  // problems and saving -------------------------------------------------------------------------
  function clearMarks() {
    var canvas = modeler.get("canvas");
    marked.forEach(function (id) { try { canvas.removeMarker(id, "lint-error"); } catch (ignore) { /* gone */ } });
    marked = [];
  }

  function showProblems(problems) {
    clearMarks();
    problemList.textContent = "";
    problemsEl.hidden = !problems.length;
    var canvas = modeler.get("canvas"), registry = modeler.get("elementRegistry");
    problems.forEach(function (p) {
      var li = document.createElement("li");
      li.dataset.element = p.element || "";
      var code = document.createElement("code");
      code.textContent = (p.file || "") + (p.line ? ":" + p.line : "");
      li.appendChild(code);
      li.appendChild(document.createTextNode(" " + p.message));
      if (p.element && registry.get(p.element)) {
        canvas.addMarker(p.element, "lint-error");
        marked.push(p.element);
        li.classList.add("locatable");
        li.addEventListener("click", function () {
          modeler.get("selection").select(registry.get(p.element));
          canvas.scrollToElement(registry.get(p.element));
        });
      }
      problemList.appendChild(li);
    });
  }

  function send(check) {
    say(el.dataset.saving || "…");
    return modeler.saveXML({ format: true }).then(function (result) {
      var body = new FormData();
      body.append("xml", restoreLoopRefs(result.xml));
      body.append("csrf_token", el.dataset.csrf);
      if (check) { body.append("check", "1"); }
      return fetch(el.dataset.save, { method: "POST", body: body, credentials: "same-origin",
                                      headers: { "X-CSRFToken": el.dataset.csrf } });
    }).then(function (r) {
      if (r.status === 403) { throw new Error(el.dataset.forbidden || "not allowed"); }
      return r.json();
    }).then(function (data) {
      showProblems(data.problems || []);
      if (!data.ok) { say(""); el.dataset.saved = "problems"; return; }
      var mine = (data.deployed || [])[0];
      if (check) {
        say(el.dataset.clean || "No problems.", "ok");
      } else if (mine && mine.changed) {
        say((el.dataset.deployedText || "Deployed as version {v}.").replace("{v}", mine.version), "ok");
      } else {
        say((el.dataset.unchangedText || "Nothing changed: still version {v}.").replace("{v}", mine ? mine.version : "?"), "ok");
      }
      el.dataset.saved = check ? "clean" : String(mine ? mine.version : "");
    }).catch(function (err) { say(String(err.message || err), "error"); el.dataset.saved = "error"; });
  }

  document.getElementById("save").addEventListener("click", function () { send(false); });
  document.getElementById("check").addEventListener("click", function () { send(true); });

  // SpiffWorkflow reads loopDataInputRef/loopDataOutputRef as variable names, not element ids; bpmn-js
  // drops a reference it cannot resolve, so those are remembered on import and put back on save.
  var BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL", REFS = ["loopDataInputRef", "loopDataOutputRef"];
  var loopRefs = {};

  function rememberLoopRefs(xml) {
    loopRefs = {};
    var doc = new DOMParser().parseFromString(xml, "application/xml");
    var ids = {};
    Array.prototype.forEach.call(doc.getElementsByTagName("*"), function (n) {
      if (n.getAttribute("id")) { ids[n.getAttribute("id")] = true; }
    });
    Array.prototype.forEach.call(doc.getElementsByTagNameNS(BPMN_NS, "multiInstanceLoopCharacteristics"), function (mi) {
      var owner = mi.parentNode && mi.parentNode.getAttribute && mi.parentNode.getAttribute("id");
      if (!owner) { return; }
      REFS.forEach(function (name) {
        var ref = mi.getElementsByTagNameNS(BPMN_NS, name)[0];
        var text = ref && ref.textContent.trim();
        if (text && !ids[text]) { (loopRefs[owner] = loopRefs[owner] || {})[name] = text; }
      });
    });
  }

  function restoreLoopRefs(xml) {
    if (!Object.keys(loopRefs).length) { return xml; }
    var doc = new DOMParser().parseFromString(xml, "application/xml");
    Array.prototype.forEach.call(doc.getElementsByTagNameNS(BPMN_NS, "multiInstanceLoopCharacteristics"), function (mi) {
      var refs = loopRefs[mi.parentNode.getAttribute("id")];
      if (!refs) { return; }
      var prefix = mi.prefix ? mi.prefix + ":" : "";
      REFS.slice().reverse().forEach(function (name) {
        if (!refs[name] || mi.getElementsByTagNameNS(BPMN_NS, name).length) { return; }
        var node = doc.createElementNS(BPMN_NS, prefix + name);
        node.textContent = refs[name];
        var before = mi.firstElementChild;
        while (before && before.localName === "loopCardinality") { before = before.nextElementSibling; }
        if (name === "loopDataOutputRef") {
          var input = mi.getElementsByTagNameNS(BPMN_NS, "loopDataInputRef")[0];
          if (input) { before = input.nextElementSibling; }
        }
        mi.insertBefore(node, before);
      });
    });
    return new XMLSerializer().serializeToString(doc);
  }

  function load(xml) {
    el.dataset.ready = "";
    rememberLoopRefs(xml);
    return modeler.importXML(xml).then(function (result) {
      modeler.get("canvas").zoom("fit-viewport");
      el.dataset.warnings = String((result.warnings || []).length);
      el.dataset.ready = "1";
      showProblems([]);
    }).catch(function (err) {
      el.dataset.ready = "error";
      say("import: " + (err.message || err), "error");
    });
  }

  document.getElementById("open-file").addEventListener("change", function (e) {
    var file = e.target.files && e.target.files[0];
    if (!file) { return; }
    var reader = new FileReader();
    reader.onload = function () { load(String(reader.result)); };
    reader.readAsText(file);
  });

  fetch(el.dataset.moddle, { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (descriptor) {
      modeler = new window.BpmnJS({ container: el, moddleExtensions: { spiffworkflow: descriptor } });
      window.opsflowModeler = modeler;
      modeler.get("eventBus").on("selection.changed", function (e) {
        show(e.newSelection.length === 1 ? e.newSelection[0] : null);
      });
      modeler.get("eventBus").on("elements.changed", function () {
        if (selected) { show(selected); }
      });
      return fetch(el.dataset.xml, { credentials: "same-origin" });
    })
    .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
    .then(load)
    .catch(function (err) { el.dataset.ready = "error"; say(String(err), "error"); });
})();
