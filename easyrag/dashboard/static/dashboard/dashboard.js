// The staff dashboard's live pages: poll their JSON with fetch() and update the DOM in place.
// Every value from the server reaches the page through textContent, a class name from a fixed
// list, or an attribute set with setAttribute: never innerHTML.  Nothing is loaded from elsewhere.
"use strict";

(function () {
  const body = document.body;
  const POLL_MS = Number(body.dataset.pollMs) || 1000;
  const CSRF_TOKEN = body.dataset.csrfToken || "";
  const STATUSES = ["PENDING", "RUNNING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"];
  const ACTIVE = new Set(["PENDING", "RUNNING", "RETRYING"]);
  const PRIORITIES = ["URGENT", "HIGH", "NORMAL", "LOW"];

  // ---- small DOM helpers ------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    const value = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function setTitle(node, text) {
    const value = text === undefined || text === null ? "" : String(text);
    if (node.getAttribute("title") !== value) node.setAttribute("title", value);
  }

  function taskUrl(taskId) {
    return body.dataset.taskUrl.replace("__TASK_ID__", encodeURIComponent(taskId));
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // A record's ISO time, short: "14:03:27" today, "11-30 18:27" another day (local time).
  function shortTime(iso) {
    if (!iso) return "–";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    const now = new Date();
    const clock = pad(when.getHours()) + ":" + pad(when.getMinutes());
    if (when.toDateString() === now.toDateString()) return clock + ":" + pad(when.getSeconds());
    return pad(when.getMonth() + 1) + "-" + pad(when.getDate()) + " " + clock;
  }

  // A record's ISO time in full, local: "2026-12-07 16:29:15.887".
  function longTime(iso) {
    if (!iso) return "–";
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return String(iso);
    return when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) + " " +
      pad(when.getHours()) + ":" + pad(when.getMinutes()) + ":" + pad(when.getSeconds()) + "." +
      String(when.getMilliseconds()).padStart(3, "0");
  }

  function setLongTime(node, iso) {
    setText(node, longTime(iso));
    setTitle(node, iso || "");
  }

  function setTime(node, iso) {
    setText(node, shortTime(iso));
    setTitle(node, iso || "");
  }

  function setBadge(node, status) {
    const known = STATUSES.includes(status) ? status.toLowerCase() : "unknown";
    const className = "badge badge-" + known;
    if (node.className !== className) node.className = className;
    setText(node, status || "");
  }

  function progressBar() {
    const wrap = el("div", "progress");
    const track = el("div", "track");
    track.appendChild(el("div", "bar"));
    wrap.append(track, el("span", "pct"));
    return wrap;
  }

  function setProgress(wrap, percent, status) {
    const value = Math.max(0, Math.min(100, Number(percent) || 0));
    wrap.querySelector(".bar").style.width = value + "%";
    setText(wrap.querySelector(".pct"), value + "%");
    const className = "progress" + (wrap.classList.contains("big") ? " big" : "") +
      (STATUSES.includes(status) ? " p-" + status.toLowerCase() : "");
    if (wrap.className !== className) wrap.className = className;
  }

  function pretty(value) {
    if (value === undefined || value === null) return "";
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  // ---- talking to the server --------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function readJson(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (ignored) {
      data = null; // a proxy's or Django's HTML error page
    }
    if (!response.ok) {
      const reason = data && data.error ? data.error : response.status + " " + response.statusText;
      throw new HttpError(response.status, reason);
    }
    return data;
  }

  async function getJson(url) {
    const response = await fetch(url, {
      headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store",
    });
    return readJson(response);
  }

  async function postForm(url, fields) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": CSRF_TOKEN },
      body: new URLSearchParams(fields),
    });
    return readJson(response);
  }

  // The live indicator in the top bar.
  const live = document.getElementById("live");

  function showLive(ok, text) {
    live.className = "live " + (ok ? "live-ok" : "live-down");
    setText(live, text);
  }

  function explain(error) {
    if (error instanceof HttpError && (error.status === 401 || error.status === 403)) {
      return "signed out or not staff: sign in again at " + body.dataset.loginUrl;
    }
    return error.message || String(error);
  }

  // Fetch ``url`` now and then every POLL_MS (after the previous answer), calling render(data).
  // render may return false to stop (a finished task does not change any more).
  function poll(url, render) {
    const state = { timer: null, stopped: false, polls: 0 };
    async function tick() {
      state.timer = null;
      let again = true;
      try {
        const data = await getJson(url);
        state.polls += 1;
        body.dataset.polls = String(state.polls);
        again = render(data) !== false;
        showLive(true, again ? "live · updated " + new Date().toLocaleTimeString() : "final · no more updates");
      } catch (error) {
        again = render(null, error) !== false;
        showLive(false, "not updating: " + explain(error) + (again ? " · retrying" : ""));
      }
      if (again && !state.stopped) state.timer = setTimeout(tick, document.hidden ? POLL_MS * 5 : POLL_MS);
    }
    state.refresh = function () {
      if (state.timer !== null) {
        clearTimeout(state.timer);
        tick();
      }
    };
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) state.refresh();
    });
    tick();
    return state;
  }

  // Keep a tbody's rows in the order of ``items``, reusing the row of each key.
  function syncRows(tbody, items, keyOf, create, update, emptyText, columns) {
    const existing = new Map();
    for (const row of Array.from(tbody.rows)) {
      if (row.dataset.key !== undefined) existing.set(row.dataset.key, row);
      else row.remove();
    }
    const wanted = new Set();
    let previous = null;
    for (const item of items) {
      const key = String(keyOf(item));
      wanted.add(key);
      let row = existing.get(key);
      if (!row) {
        row = create(item);
        row.dataset.key = key;
      }
      update(row, item);
      const next = previous ? previous.nextSibling : tbody.firstChild;
      if (row !== next) tbody.insertBefore(row, next);
      previous = row;
    }
    for (const [key, row] of existing) if (!wanted.has(key)) row.remove();
    if (items.length === 0) {
      const row = tbody.insertRow();
      const cell = row.insertCell();
      cell.colSpan = columns;
      cell.className = "empty";
      cell.textContent = emptyText;
    }
  }

  function cells(row, count) {
    for (let i = 0; i < count; i += 1) row.appendChild(el("td"));
    return row.cells;
  }

  function taskLink(taskId) {
    const link = el("a", "id", taskId);
    link.href = taskUrl(taskId);
    link.setAttribute("title", taskId);
    return link;
  }

  // user_id is whatever JSON the submitter passed: a number or a string mostly.
  function owner(task) {
    const id = task.user_id;
    if (id === null || id === undefined) return "–";
    return typeof id === "object" ? JSON.stringify(id) : String(id);
  }

  // ---- the overview page ------------------------------------------------------------------

  function renderStats(stats) {
    for (const card of document.querySelectorAll("[data-stat]")) {
      const value = stats[card.dataset.stat];
      setText(card.querySelector(".value"), value === undefined ? "–" : Number(value).toLocaleString());
      card.classList.toggle("nonzero", Number(value) > 0);
    }
  }

  function renderQueues(queues) {
    const order = (q) => PRIORITIES.indexOf(q.priority);
    const sorted = queues.slice().sort((a, b) => order(a) - order(b));
    syncRows(document.getElementById("queues"), sorted, (q) => q.queue_name + "\u0000" + q.priority,
      function (queue) {
        const row = el("tr");
        const c = cells(row, 3);
        c[0].appendChild(el("span", "prio prio-" + (PRIORITIES.includes(queue.priority) ?
          queue.priority.toLowerCase() : "normal"), queue.priority));
        c[1].className = "mono";
        c[2].className = "num";
        return row;
      },
      function (row, queue) {
        setText(row.cells[1], queue.queue_name);
        setTitle(row.cells[1], queue.queue_name);
        setText(row.cells[2], Number(queue.length).toLocaleString());
      },
      "No queue", 3);
  }

  function renderWorkers(workers) {
    syncRows(document.getElementById("workers"), workers, (w) => w.hostname,
      function () {
        const row = el("tr");
        const c = cells(row, 3);
        c[0].className = "mono";
        c[1].className = "num";
        c[2].className = "num";
        return row;
      },
      function (row, worker) {
        setText(row.cells[0], worker.hostname);
        setTitle(row.cells[0], worker.hostname);
        setText(row.cells[1], worker.active);
        setText(row.cells[2], Number(worker.processed).toLocaleString());
      },
      "No worker is running: tasks wait in their queues", 3);
  }

  function renderRecent(tasks) {
    syncRows(document.getElementById("recent"), tasks, (t) => t.task_id,
      function (task) {
        const row = el("tr");
        const c = cells(row, 9);
        c[0].appendChild(taskLink(task.task_id));
        c[3].appendChild(el("span", "badge"));
        const line = el("div", "progress-line");
        line.append(progressBar(), el("span", "message"));
        c[4].appendChild(line);
        c[2].className = "mono";
        c[8].className = "mono";
        for (const i of [5, 6, 7]) c[i].className = "time";
        return row;
      },
      function (row, task) {
        const c = row.cells;
        row.dataset.status = task.status;
        setText(c[1], task.task_type);
        setTitle(c[1], task.task_type);
        setText(c[2], owner(task));
        setBadge(c[3].firstChild, task.status);
        setProgress(c[4].querySelector(".progress"), task.progress, task.status);
        const message = c[4].querySelector(".message");
        setText(message, task.message || "");
        setTitle(message, task.message || "");
        setTime(c[5], task.created_at);
        setTime(c[6], task.started_at);
        setTime(c[7], task.finished_at);
        setText(c[8], task.worker || "–");
        setTitle(c[8], task.worker || "");
      },
      "No task yet", 9);
  }

  function renderFailed(tasks) {
    syncRows(document.getElementById("failed"), tasks, (t) => t.task_id,
      function (task) {
        const row = el("tr");
        const c = cells(row, 5);
        c[0].appendChild(taskLink(task.task_id));
        c[2].className = "error-text";
        c[2].appendChild(el("div", "clamp"));
        c[3].className = "time";
        c[4].className = "num";
        return row;
      },
      function (row, task) {
        const c = row.cells;
        setText(c[1], task.task_type);
        setTitle(c[1], task.task_type);
        setText(c[2].firstChild, task.error || "(no error recorded)");
        setTitle(c[2], task.error || "");
        setTime(c[3], task.finished_at);
        setText(c[4], task.retries);
      },
      "No failed task", 5);
  }

  function renderOverview(data) {
    if (!data) return true;
    renderStats(data.stats || {});
    renderQueues(data.queues || []);
    renderWorkers(data.workers || []);
    renderRecent(data.recent || []);
    renderFailed(data.failed || []);
    body.dataset.generatedAt = data.generated_at || "";
    return true;
  }

  // ---- dead letters -----------------------------------------------------------------------

  function initDeadLetters() {
    const form = document.getElementById("dead-letter-form");
    const input = document.getElementById("dead-letter-key");
    const summary = document.getElementById("dead-letter-summary");
    const flash = document.getElementById("dead-letter-flash");
    const table = document.getElementById("dead-letter-table");
    const tbody = document.getElementById("letters");
    let shownKey = "";

    function say(text, bad) {
      flash.hidden = !text;
      flash.className = "flash" + (bad ? " flash-bad" : "");
      setText(flash, text);
    }

    async function load(key) {
      const url = body.dataset.deadLettersUrl + "?" + new URLSearchParams({ key: key });
      let data;
      try {
        data = await getJson(url);
      } catch (error) {
        say(explain(error), true);
        return;
      }
      shownKey = data.key;
      const query = new URLSearchParams(window.location.search);
      query.set("key", data.key);
      window.history.replaceState(null, "", "?" + query.toString());
      setText(summary, data.key + ":dead holds " + data.count.toLocaleString() + " letter" +
        (data.count === 1 ? "" : "s") + (data.count > data.letters.length ?
          " · the newest " + data.letters.length + " are shown" : ""));
      table.hidden = false;
      syncRows(tbody, data.letters, (letter) => letter.id, createLetterRow, updateLetterRow,
        "No dead letter", 4);
    }

    function createLetterRow(letter) {
      const row = el("tr");
      const c = cells(row, 4);
      c[0].className = "time";
      c[1].className = "error-text";
      c[1].appendChild(el("div", "clamp"));
      c[2].appendChild(el("pre", "raw"));
      c[3].className = "actions";
      const requeue = el("button", "", "Requeue");
      requeue.type = "button";
      requeue.dataset.action = "requeue";
      const remove = el("button", "danger", "Delete");
      remove.type = "button";
      remove.dataset.action = "delete";
      c[3].append(requeue, remove);
      requeue.addEventListener("click", () => act("requeue", row.dataset.key, row));
      remove.addEventListener("click", () => act("delete", row.dataset.key, row));
      return row;
    }

    function updateLetterRow(row, letter) {
      const c = row.cells;
      setTime(c[0], letter.failed_at);
      setText(c[1].firstChild, letter.error || "");
      setTitle(c[1], letter.error || "");
      setText(c[2].firstChild, letter.raw);
      const requeue = c[3].querySelector('[data-action="requeue"]');
      requeue.disabled = !letter.requeueable;
      setTitle(requeue, letter.requeueable ? "Push the item back onto " + shownKey : letter.reason);
    }

    async function act(action, letterId, row) {
      if (action === "delete" && !window.confirm("Delete this dead letter? Its item is lost.")) return;
      for (const button of row.querySelectorAll("button")) button.disabled = true;
      const url = action === "requeue" ? body.dataset.requeueUrl : body.dataset.deleteUrl;
      try {
        const reply = await postForm(url, { key: shownKey, id: letterId });
        const done = action === "requeue" ? reply.requeued : reply.deleted;
        say(done ? (action === "requeue" ? "Requeued onto " + shownKey + ": it is taken like a new item."
          : "Deleted.") : "Nothing done: the letter was requeued or deleted already.", !done);
      } catch (error) {
        say(explain(error), true);
      }
      await load(shownKey);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      say("");
      const key = input.value.trim();
      if (key) load(key);
    });
    if (input.value.trim()) load(input.value.trim());
  }

  // ---- one task's page --------------------------------------------------------------------

  function initTask() {
    const cancel = document.getElementById("cancel");
    const flash = document.getElementById("task-flash");
    const $ = (id) => document.getElementById(id);
    let poller = null;

    function say(text, bad) {
      flash.hidden = !text;
      flash.className = "flash" + (bad ? " flash-bad" : "");
      setText(flash, text);
    }

    function render(task, error) {
      if (!task) {
        if (error instanceof HttpError && error.status === 404) {
          say("This task's record is gone (expired).", true);
          cancel.hidden = true;
          return false;
        }
        return true;
      }
      setText($("task-type"), task.task_type);
      document.title = task.task_type + " " + task.status + " · EasyRAG";
      setBadge($("task-status"), task.status);
      setProgress($("task-progress"), task.progress, task.status);
      setText($("task-message"), task.message || "");
      setText($("task-priority"), PRIORITIES[task.priority] || task.priority);
      setText($("task-owner"), owner(task));
      setText($("task-worker"), task.worker || "–");
      setText($("task-retries"), task.retries);
      setLongTime($("task-created"), task.created_at);
      setLongTime($("task-eta"), task.eta);
      if (!task.eta) setText($("task-eta"), "at once");
      setLongTime($("task-started"), task.started_at);
      setLongTime($("task-finished"), task.finished_at);
      $("task-error-panel").hidden = !task.error;
      setText($("task-error"), task.error || "");
      const hasResult = task.result !== null && task.result !== undefined;
      $("task-result-panel").hidden = !hasResult;
      setText($("task-result"), pretty(task.result));
      setText($("task-data"), pretty(task.task_data));
      cancel.hidden = !ACTIVE.has(task.status);
      body.dataset.status = task.status;
      return ACTIVE.has(task.status);
    }

    cancel.addEventListener("click", async function () {
      if (!window.confirm("Cancel this task? A cancelled task does not run again.")) return;
      cancel.disabled = true;
      try {
        const reply = await postForm(body.dataset.cancelUrl, {});
        say(reply.cancelled ? "Cancelled." : "Not cancelled: the task had already finished.", !reply.cancelled);
        if (reply.task) render(reply.task);
      } catch (error) {
        say(explain(error), true);
      }
      cancel.disabled = false;
      poller.refresh();
    });

    poller = poll(body.dataset.dataUrl, render);
  }

  if (body.dataset.page === "overview") {
    poll(body.dataset.dataUrl, renderOverview);
    initDeadLetters();
  } else if (body.dataset.page === "task") {
    initTask();
  } else {
    showLive(false, "no data");
  }
})();
