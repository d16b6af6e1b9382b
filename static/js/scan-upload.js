/* Upload page: send the chosen files with XMLHttpRequest so the page can show upload
   progress, then list what happened to each file (stored and queued, duplicate, or
   refused with the reason). Without JavaScript the form posts normally and the outcomes
   appear as messages on the patient's page. */
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var box = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-progress-bar");
  var text = document.getElementById("upload-progress-text");
  var outcome = document.getElementById("upload-outcome");
  var submit = document.getElementById("upload-submit");

  function el(tag, className, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content) { node.textContent = content; }
    return node;
  }

  function showProgress(percent, label) {
    box.hidden = false;
    bar.value = percent;
    text.textContent = label;
  }

  function showOutcome(data) {
    outcome.textContent = "";
    var list = el("ul", "upload-results");
    (data.errors || []).forEach(function (message) { list.appendChild(el("li", "bad", message)); });
    (data.files || []).forEach(function (file) {
      var item = el("li", file.ok ? "ok" : "bad");
      if (file.ok) {
        item.appendChild(document.createTextNode(file.filename + ": stored and queued. "));
        var link = el("a", "", "Open screening #" + file.screening_id);
        link.href = file.screening_url;
        item.appendChild(link);
        if (file.warning) { item.appendChild(el("span", "warning", file.warning)); }
      } else {
        item.textContent = file.error;
      }
      list.appendChild(item);
    });
    outcome.appendChild(el("p", "", (data.stored || 0) + " stored, " + (data.failed || 0) + " refused."));
    outcome.appendChild(list);
    var back = el("a", "btn btn-secondary", "Back to the patient");
    back.href = data.patient_url || form.dataset.patientUrl;
    outcome.appendChild(back);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var percent = Math.round((e.loaded / e.total) * 100);
        showProgress(percent, percent < 100 ? "Uploading… " + percent + "%" : "Checking the files…");
      }
    });
    xhr.addEventListener("load", function () {
      submit.disabled = false;
      var data;
      try { data = JSON.parse(xhr.responseText); } catch (err) { data = null; }
      if (!data) {
        showProgress(0, "The upload failed (" + xhr.status + " " + (xhr.responseText || xhr.statusText).slice(0, 200) + ").");
        return;
      }
      showProgress(100, "Done.");
      showOutcome(data);
      form.reset();
    });
    xhr.addEventListener("error", function () {
      submit.disabled = false;
      showProgress(0, "The upload failed: the server could not be reached. Nothing was stored by this attempt.");
    });
    submit.disabled = true;
    showProgress(0, "Uploading… 0%");
    xhr.send(new FormData(form));
  });
})();
