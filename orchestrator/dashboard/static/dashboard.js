/* The dashboard's little bit of behaviour; every page works without it. */
(function () {
  "use strict";

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  /* Forms that ask before they act (delete). */
  each("form[data-confirm]", function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });

  /* After a rejected submission, put the keyboard focus on the list of problems. */
  var summary = document.querySelector("[data-error-summary]");
  if (summary) summary.focus();

  /* The deployment form: manual site choice enables the site list; one submission only. */
  each("[data-site-choice]", function (box) {
    var list = box.querySelector("[data-site-list]");
    function sync() {
      var manual = box.querySelector("#site-manual").checked;
      list.classList.toggle("disabled", !manual);
      Array.prototype.forEach.call(list.querySelectorAll("input"), function (input) {
        input.disabled = !manual;
      });
    }
    Array.prototype.forEach.call(box.querySelectorAll("input[name=site_mode]"), function (r) {
      r.addEventListener("change", sync);
    });
    sync();
  });
  each("form[data-deploy-form]", function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("[data-submit]");
      window.setTimeout(function () {
        button.disabled = true;
        button.textContent = "Validating…";
      }, 0);
    });
  });

  /* Live progress: poll the deployment's events until nothing is queued or running. */
  var progress = document.querySelector("[data-progress]");
  if (!progress) return;
  var url = progress.getAttribute("data-url");
  var since = parseInt(progress.getAttribute("data-since"), 10) || 0;
  var shownStatus = progress.getAttribute("data-status");
  var wasDone = progress.getAttribute("data-done") === "true";
  var list = progress.querySelector("[data-events]");
  var live = progress.querySelector("[data-live-status]");
  var badges = document.querySelectorAll("h1 [data-status-badge]");
  var delay = 1000;

  function addEvent(e) {
    var item = document.createElement("li");
    item.className = "event level-" + e.level;
    var time = document.createElement("time");
    time.textContent = e.ts;
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = e.kind;
    var message = document.createElement("span");
    message.className = "message";
    message.textContent = e.message;
    item.append(time, " ", kind, " ", message);
    list.appendChild(item);
  }

  function show(status, done) {
    Array.prototype.forEach.call(badges, function (badge) {
      badge.className = "badge badge-" + status;
      badge.textContent = status;
    });
    live.textContent = done ? status.charAt(0).toUpperCase() + status.slice(1) + "."
                            : "Working: " + status + "…";
    if (!done) {
      var spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      live.prepend(spinner, " ");
    }
  }

  function poll() {
    fetch(url + "?since=" + since, {headers: {"Accept": "application/json"},
                                     credentials: "same-origin"})
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
        return response.json();
      })
      .then(function (state) {
        state.events.forEach(function (e) { addEvent(e); since = Math.max(since, e.id); });
        if (state.gone) {
          window.location.assign(progress.getAttribute("data-home") + "?notice=deleted");
          return;
        }
        show(state.status, state.done);
        if (state.done) {
          /* reload once so outputs, resources and buttons match the new state */
          if (!wasDone || state.status !== shownStatus) window.location.reload();
          return;
        }
        delay = 1000;
        window.setTimeout(poll, delay);
      })
      .catch(function () {
        delay = Math.min(delay * 2, 10000);
        window.setTimeout(poll, delay);
      });
  }

  if (!wasDone) window.setTimeout(poll, 500);
})();
