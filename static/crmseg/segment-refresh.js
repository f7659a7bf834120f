/* "Refresh now" on the segment page: queue a refresh, then poll the status until the worker
 * has finished it (last refresh time moves past the request), and show the new figures. After a
 * save in the admin (data-saved-at) the page says the build is queued and polls the same way. */
(function () {
  "use strict";
  var button = document.getElementById("refresh-now");
  if (!button) return;
  var progress = document.getElementById("refresh-progress");
  var csrf = document.querySelector("input[name=csrfmiddlewaretoken]").value;

  function field(name) { return document.querySelector('[data-refresh-field="' + name + '"]'); }

  function show(state) {
    field("size").textContent = state.size.toLocaleString("en");
    field("status_label").textContent = state.status_label;
    field("when").textContent = state.refreshed_at ? new Date(state.refreshed_at).toLocaleString() : "never";
    field("duration").textContent = state.duration_ms === null ? "—" : state.duration_ms.toLocaleString("en") + " ms";
    field("changed").textContent = "+" + state.added.toLocaleString("en") + " / −" + state.removed.toLocaleString("en");
    var error = field("error");
    error.hidden = !state.error;
    error.querySelector("span").textContent = state.error || "";
    var note = field("note");
    note.hidden = !state.note;
    note.textContent = state.note || "";
  }

  function poll(requestedAt, started, attempt) {
    fetch(button.dataset.statusUrl, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (state) {
        var finished = state.refreshed_at && new Date(state.refreshed_at) >= new Date(requestedAt);
        var seconds = Math.round((Date.now() - started) / 1000);
        if (finished) {
          show(state);
          progress.textContent = state.status === "failed"
            ? "The refresh failed after " + seconds + " s; the error is shown above."
            : (saved ? "Saved and built: " : "Refreshed in " + seconds + " s: ") + state.size.toLocaleString("en") +
              " members. Reloading the charts…";
          button.disabled = false;
          button.textContent = "Refresh now";
          if (state.status !== "failed") setTimeout(function () { window.location.replace(window.location.pathname + (saved ? "?built=1" : "")); }, 800);
          return;
        }
        if (saved) {
          progress.textContent = "Saved. " + (state.running_since
            ? "Building on " + state.worker + "… " + seconds + " s"
            : "The build is queued; waiting for a worker… " + seconds + " s");
        } else {
          progress.textContent = state.running_since
            ? "Refreshing on " + state.worker + "… " + seconds + " s"
            : "Waiting for a worker to refresh this segment… " + seconds + " s";
        }
        setTimeout(function () { poll(requestedAt, started, attempt + 1); }, Math.min(500 + attempt * 250, 3000));
      })
      .catch(function () {
        progress.textContent = "Lost contact with the server; the refresh may still finish. Reload to check.";
        button.disabled = false;
        button.textContent = "Refresh now";
      });
  }

  var saved = progress.dataset.savedAt;
  if (saved) {
    progress.textContent = "Saved. The build is queued…";
    poll(saved, Date.now(), 0);
  }

  button.addEventListener("click", function () {
    saved = "";
    button.disabled = true;
    button.textContent = "Refreshing…";
    progress.textContent = "Queued.";
    fetch(button.dataset.refreshUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf } })
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (!answer.queued) {
          progress.textContent = answer.message;
          button.disabled = false;
          button.textContent = "Refresh now";
          return;
        }
        poll(answer.requested_at, Date.now(), 0);
      });
  });
})();
