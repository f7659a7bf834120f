// Import progress page: polls the import's status every second until it has finished.
(function () {
  "use strict";
  const root = document.getElementById("import-progress");
  if (!root) return;
  const url = root.dataset.statusUrl;
  const text = (id, value) => { document.getElementById(id).textContent = value; };

  function show(status) {
    text("import-status", status.status_label);
    const bar = root.querySelector(".import-bar");
    bar.setAttribute("aria-valuenow", status.percent);
    root.querySelector(".import-bar-fill").style.width = status.percent + "%";
    text("rows-done", status.rows_done);
    text("rows-per-second", status.rows_per_second);
    text("seconds-left", status.seconds_left === null ? "—" : status.seconds_left + " s");
    for (const name of ["created", "updated", "unchanged", "rejected", "kept"]) {
      if (document.getElementById("count-" + name)) text("count-" + name, status[name]);
    }
    text("import-message", status.message);
    const errors = document.getElementById("errors-link");
    errors.hidden = !status.errors_url;
    if (status.errors_url) errors.href = status.errors_url;
    const segment = document.getElementById("segment-link");
    segment.hidden = !status.segment_url;
    if (status.segment_url) {
      segment.href = status.segment_url;
      segment.textContent = "Segment “" + status.segment_name + "”";
    }
    document.getElementById("cancel-form").hidden = status.finished;
    root.dataset.finished = status.finished ? "yes" : "no";
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const status = await response.json();
        show(status);
        if (status.finished) return;
      }
    } catch (error) {
      // A dropped request is retried on the next tick.
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
