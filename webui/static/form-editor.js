/* The form editor's live preview: the schema is rendered on the server by the inbox's own macros. */
(function () {
  "use strict";
  var editor = document.getElementById("form-editor");
  var preview = document.getElementById("preview");
  if (!editor || !preview || !window.fetch) { return; }
  var textarea = document.getElementById("schema");
  var timer = null;

  function refresh() {
    var body = new FormData();
    body.append("schema", textarea.value);
    body.append("csrf_token", editor.querySelector("[name=csrf_token]").value);
    fetch(editor.dataset.preview, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { preview.innerHTML = html; preview.dataset.updated = String(Date.now()); });
  }

  textarea.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
  preview.addEventListener("submit", function (e) { e.preventDefault(); });
})();
