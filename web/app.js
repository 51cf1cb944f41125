// Studio's dashboard: a client-side router over the HTTP API (/api/v1).
// Pages are rebuilt from API responses. They update live from the
// /api/v1/events stream instead of polling.

const PAGE_SIZE = 50;
const LIST_FIELDS = "key,script,time_added,metric,metric_value,project,owner,status";
/// Most output bytes shown at first on the experiment page; older output
/// stays downloadable from the API.
const OUTPUT_TAIL_BYTES = 256 * 1024;
const UNFINISHED = new Set(["waiting", "queued", "running"]);
/// Local-storage key of the dashboard token. `studio ui` prints the
/// dashboard's address with `#token=…`. Requests with the token act as
/// studiod's user. Without it, a studiod running as root only lets the page
/// read.
const TOKEN_KEY = "studio-dashboard-token";

const main = document.getElementById("main");
let daemonInfo = null;
/// Work that the current page does when an event arrives; replaced on
/// every navigation.
let onEvent = null;
/// Streams and timers of the current page, closed on navigation.
let pageResources = [];

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /// True when studiod has no such route, for example a route of a
  /// feature that this studiod was built without.
  get missingRoute() {
    return this.status === 404 && this.message.startsWith("no route");
  }
}

/// Sends a request to the API and returns the decoded JSON (or text).
/// State-changing requests carry X-Requested-With, which studiod requires
/// on its HTTP port so that other web sites cannot send them.
async function api(path, options = {}) {
  const headers = { "X-Requested-With": "studio", ...(options.headers || {}) };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 401) localStorage.removeItem(TOKEN_KEY);
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body;
}

/// Creates an element: `el("a", {href: "#/"}, "text", child)`. Text is
/// always inserted as text, never as HTML.
function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "className") element.className = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function showError(error) {
  const banner = document.getElementById("error");
  if (!error) {
    banner.hidden = true;
    banner.textContent = "";
    return;
  }
  banner.hidden = false;
  banner.textContent = error.message || String(error);
}

function formatTime(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const date = new Date(seconds * 1000);
  const pad = (number) => String(number).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function formatDuration(seconds) {
  if (seconds === undefined || seconds === null) return "";
  const whole = Math.max(0, Math.round(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${rest} s`;
  return `${rest} s`;
}

function formatNumber(value) {
  if (value === undefined || value === null) return "";
  return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
    ? value.toExponential(4)
    : String(Math.round(value * 1e6) / 1e6);
}

function formatBytes(bytes) {
  if (bytes === undefined || bytes === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
}

function statusBadge(status) {
  return el("span", { className: `status ${status}`, "data-status": status }, status);
}

const link = {
  experiment: (key) => el("a", { href: `#/experiment/${encodeURIComponent(key)}` }, key),
  project: (name) => (name ? el("a", { href: `#/project/${encodeURIComponent(name)}` }, name) : ""),
  user: (name) => el("a", { href: `#/user/${encodeURIComponent(name)}` }, name),
};

/// Web address of a commit when the remote is on GitHub, else null.
function commitUrl(git) {
  if (!git || !git.url || !git.commit) return null;
  const match = git.url.match(/github\.com[:/]([^/]+\/[^/]+?)(\.git)?\/?$/);
  return match ? `https://github.com/${match[1]}/commit/${git.commit}` : null;
}

// ---------------------------------------------------------------- tables

/// Builds a paged, sortable table of experiments with multi-select delete.
/// It reads one page at a time with `fields=` and the API's cursors, so it
/// stays fast with any number of experiments.
function experimentTable({ title, filters }) {
  const state = { sort: "time", q: "", status: "", cursors: [null], page: 0, selected: new Set() };
  const body = el("tbody");
  const summary = el("span", { className: "note", id: "summary" });
  const previous = el("button", { id: "previous-page", onclick: () => go(state.page - 1) }, "Previous");
  const next = el("button", { id: "next-page", onclick: () => go(state.page + 1) }, "Next");
  const deleteButton = el("button", { id: "delete-selected", className: "danger", disabled: true, onclick: deleteSelected }, "Delete selected");
  const selectAll = el("input", { type: "checkbox", title: "Select all on this page", onchange: toggleAll });
  const sortHeader = (label, sorts) => {
    const header = el("th", { className: "sortable", "data-sort": sorts[0] }, label);
    header.addEventListener("click", () => {
      const index = sorts.indexOf(state.sort);
      state.sort = sorts[(index + 1) % sorts.length];
      restart();
    });
    return header;
  };
  const timeHeader = sortHeader("Time added", ["time", "-time"]);
  const metricHeader = sortHeader("Metric value", ["metric"]);
  const search = el("input", { type: "search", placeholder: "Search key, script, project…", id: "search" });
  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.q = search.value.trim();
      restart();
    }, 250);
  });
  const statusFilter = el("select", { id: "status-filter", onchange: () => { state.status = statusFilter.value; restart(); } },
    el("option", { value: "" }, "any status"),
    ["waiting", "queued", "running", "finished", "failed", "stopped", "interrupted"].map((status) => el("option", { value: status }, status)));

  const view = el("section", {},
    el("h1", {}, title),
    el("div", { className: "toolbar" }, search, statusFilter, el("span", { className: "spacer" }), deleteButton),
    el("table", { id: "experiments" },
      el("thead", {}, el("tr", {},
        el("th", {}, selectAll), el("th", {}, "Key"), el("th", {}, "Script"), timeHeader, el("th", {}, "Metric"),
        metricHeader, el("th", {}, "Project"), el("th", {}, "Owner"), el("th", {}, "Status"))),
      body),
    el("div", { className: "pager" }, previous, next, summary));

  function restart() {
    state.cursors = [null];
    state.page = 0;
    state.selected.clear();
    load();
  }

  function go(page) {
    if (page < 0 || page >= state.cursors.length) return;
    state.page = page;
    state.selected.clear();
    load();
  }

  async function load() {
    const query = new URLSearchParams({ fields: LIST_FIELDS, limit: PAGE_SIZE, sort: state.sort, ...filters });
    if (state.q) query.set("q", state.q);
    if (state.status) query.set("status", state.status);
    const cursor = state.cursors[state.page];
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api(`/api/v1/experiments?${query}`);
      showError(null);
    } catch (error) {
      showError(error);
      return;
    }
    state.cursors.length = state.page + 1;
    if (page.next_cursor) state.cursors.push(page.next_cursor);
    render(page);
  }

  function render(page) {
    body.replaceChildren(...page.experiments.map((experiment) => {
      const checkbox = el("input", { type: "checkbox", className: "select", "data-key": experiment.key });
      checkbox.checked = state.selected.has(experiment.key);
      checkbox.addEventListener("change", () => {
        if (checkbox.checked) state.selected.add(experiment.key);
        else state.selected.delete(experiment.key);
        updateSelection();
      });
      return el("tr", { "data-key": experiment.key },
        el("td", {}, checkbox),
        el("td", {}, link.experiment(experiment.key)),
        el("td", { className: "script", title: experiment.script }, experiment.script),
        el("td", {}, formatTime(experiment.time_added)),
        el("td", {}, experiment.metric || ""),
        el("td", { className: "number" }, formatNumber(experiment.metric_value)),
        el("td", {}, link.project(experiment.project)),
        el("td", {}, link.user(experiment.owner)),
        el("td", {}, statusBadge(experiment.status)));
    }));
    if (!page.experiments.length) {
      body.append(el("tr", {}, el("td", { colspan: 9, className: "note" }, "No experiments. Start one with `studio run script.py`.")));
    }
    const first = state.page * PAGE_SIZE;
    summary.textContent = page.total
      ? `${first + 1}–${first + page.experiments.length} of ${page.total}`
      : "";
    previous.disabled = state.page === 0;
    next.disabled = !page.next_cursor;
    for (const header of [timeHeader, metricHeader]) header.classList.remove("sorted", "ascending");
    if (state.sort === "metric") metricHeader.classList.add("sorted");
    else timeHeader.classList.add("sorted", ...(state.sort === "-time" ? ["ascending"] : []));
    updateSelection();
  }

  function updateSelection() {
    deleteButton.disabled = state.selected.size === 0;
    deleteButton.textContent = state.selected.size ? `Delete selected (${state.selected.size})` : "Delete selected";
    const boxes = body.querySelectorAll("input.select");
    selectAll.checked = boxes.length > 0 && [...boxes].every((box) => box.checked);
  }

  function toggleAll() {
    for (const box of body.querySelectorAll("input.select")) {
      box.checked = selectAll.checked;
      if (box.checked) state.selected.add(box.dataset.key);
      else state.selected.delete(box.dataset.key);
    }
    updateSelection();
  }

  async function deleteSelected() {
    const keys = [...state.selected];
    const question = `Delete ${keys.length} experiment${keys.length > 1 ? "s" : ""}? Running ones are stopped first.\n\n${keys.join("\n")}`;
    if (!keys.length || !window.confirm(question)) return;
    deleteButton.disabled = true;
    const failures = [];
    for (const key of keys) {
      try {
        await api(`/api/v1/experiments/${encodeURIComponent(key)}`, { method: "DELETE" });
        state.selected.delete(key);
      } catch (error) {
        failures.push(`${key}: ${error.message}`);
      }
    }
    showError(failures.length ? new Error(`Cannot delete ${failures.join("; ")}`) : null);
    load();
  }

  load();
  return { view, refresh: load };
}

function summaryTable(id, columns, rows) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, columns.map(([label]) => el("th", {}, label)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map(([, cell, className]) => el("td", { className }, cell(row)))))));
}

// ---------------------------------------------------------------- pages

async function experimentsPage(title, filters) {
  const table = experimentTable({ title, filters });
  main.replaceChildren(table.view);
  onEvent = () => table.refresh();
}

async function projectsPage() {
  const render = async () => {
    const projects = await api("/api/v1/projects");
    projects.sort((left, right) => right.last_added - left.last_added);
    main.replaceChildren(el("h1", {}, "Projects"),
      projects.length
        ? summaryTable("projects", [
          ["Project", (project) => link.project(project.name)],
          ["Experiments", (project) => project.experiments, "number"],
          ["Running", (project) => project.running, "number"],
          ["Last added", (project) => formatTime(project.last_added)],
        ], projects)
        : el("p", { className: "note" }, "No projects yet. Give one with `studio run --project NAME script.py`."));
  };
  await render();
  onEvent = render;
}

async function usersPage() {
  const render = async () => {
    const users = await api("/api/v1/users");
    main.replaceChildren(el("h1", {}, "Users"),
      summaryTable("users", [
        ["User", (user) => link.user(user.name)],
        ["Experiments", (user) => user.experiments, "number"],
        ["Running", (user) => user.running, "number"],
      ], users));
  };
  await render();
  onEvent = render;
}

/// Shows a project's experiments side by side: best metric first, with
/// one column per hyperparameter when they come from a search.
async function projectPage(name) {
  const tensorboard = await tensorBoardControl({ project: name });
  const table = experimentTable({ title: `Experiments of project ${name}`, filters: { project: name } });
  const comparison = el("div", { id: "comparison" });
  const render = async () => {
    const page = await api(`/api/v1/experiments?${new URLSearchParams({ project: name, sort: "metric", limit: 200 })}`);
    const experiments = page.experiments;
    const names = [...new Set(experiments.flatMap((experiment) => Object.keys(experiment.hyperparameters || {})))].sort();
    const columns = [
      ["Key", (experiment) => link.experiment(experiment.key)],
      ["Status", (experiment) => statusBadge(experiment.status)],
      ["Metric", (experiment) => experiment.metric || ""],
      ["Metric value", (experiment) => formatNumber(experiment.metric_value), "number"],
      ...names.map((parameter) => [parameter, (experiment) => {
        const value = (experiment.hyperparameters || {})[parameter];
        if (value === undefined) return "";
        if (typeof value === "number") return formatNumber(value);
        return String(value);
      }, "number"]),
      ["Duration", (experiment) => formatDuration(experiment.time_started && ((experiment.time_finished || Date.now() / 1000) - experiment.time_started))],
    ];
    comparison.replaceChildren(
      el("h2", {}, "Comparison by metric"),
      page.total > experiments.length ? el("p", { className: "note" }, `The best ${experiments.length} of ${page.total} experiments.`) : "",
      summaryTable("compare", columns, experiments));
  };
  await render();
  main.replaceChildren(el("h1", {}, `Project ${name}`), tensorboard, comparison, table.view);
  table.view.querySelector("h1").replaceWith(el("h2", {}, "All experiments of the project"));
  onEvent = () => {
    table.refresh();
    render().catch(showError);
  };
}

/// Builds the TensorBoard button, or a note on how to install TensorBoard
/// when studiod cannot find it.
async function tensorBoardControl(target) {
  const box = el("div", { className: "actions", id: "tensorboard" });
  let availability;
  try {
    availability = await api("/api/v1/tensorboard");
  } catch (error) {
    if (error.missingRoute) return box;
    throw error;
  }
  if (!availability.installed) {
    box.append(el("span", { className: "note" }, `TensorBoard is not installed: install it with \`${availability.install}\` where studiod runs, then restart studiod.`));
    return box;
  }
  const result = el("span", { className: "note" });
  const button = el("button", {
    onclick: async () => {
      button.disabled = true;
      try {
        const started = await api("/api/v1/tensorboard", { method: "POST", json: target });
        result.replaceChildren("TensorBoard: ", el("a", { href: started.url, target: "_blank", rel: "noopener" }, started.url));
        window.open(started.url, "_blank", "noopener");
      } catch (error) {
        result.textContent = error.message;
      } finally {
        button.disabled = false;
      }
    },
  }, "Open TensorBoard");
  box.append(button, result);
  return box;
}

async function experimentPage(key) {
  const path = `/api/v1/experiments/${encodeURIComponent(key)}`;
  const header = el("div");
  const facts = el("div");
  const artifacts = el("div", { id: "artifacts" });
  const charts = el("div", { className: "charts", id: "charts" });
  const output = el("pre", { id: "output" });
  const outputNote = el("p", { className: "note", id: "output-note" });
  const tensorboard = await tensorBoardControl({ experiment: key });

  const render = async () => {
    let experiment;
    try {
      experiment = await api(path);
    } catch (error) {
      if (error.status === 404) {
        main.replaceChildren(el("h1", {}, `Experiment ${key}`), el("p", { className: "note", id: "gone" }, "This experiment does not exist or was deleted."));
        onEvent = null;
        return;
      }
      throw error;
    }
    renderHeader(experiment);
    renderFacts(experiment);
  };

  const renderHeader = (experiment) => {
    const running = UNFINISHED.has(experiment.status);
    const stop = el("button", {
      id: "stop", disabled: !running,
      onclick: async () => {
        stop.disabled = true;
        try {
          await api(`${path}/stop`, { method: "POST" });
        } catch (error) {
          showError(error);
        }
      },
    }, "Stop");
    const remove = el("button", {
      id: "delete", className: "danger",
      onclick: async () => {
        if (!window.confirm(`Delete experiment ${key}?${running ? " It is stopped first." : ""}`)) return;
        try {
          await api(path, { method: "DELETE" });
          window.location.hash = "#/";
        } catch (error) {
          showError(error);
        }
      },
    }, "Delete");
    header.replaceChildren(
      el("h1", {}, `Experiment ${key} `, statusBadge(experiment.status)),
      el("div", { className: "actions" }, stop, remove));
  };

  const renderFacts = (experiment) => {
    const now = Date.now() / 1000;
    const duration = experiment.time_started ? (experiment.time_finished || now) - experiment.time_started : null;
    const git = experiment.git;
    const gitUrl = commitUrl(git);
    const rows = [
      ["Status", el("span", { id: "status" }, experiment.status), experiment.reason ? ` (${experiment.reason})` : ""],
      ["Project", link.project(experiment.project) || "none"],
      ["Owner", link.user(experiment.owner)],
      ["Host", experiment.host],
      ["Added", formatTime(experiment.time_added)],
      ["Started", formatTime(experiment.time_started)],
      ["Finished", formatTime(experiment.time_finished)],
      ["Duration", formatDuration(duration)],
      ["Command", el("code", {}, [experiment.module ? `python -m ${experiment.script.replace("::", ".")}` : `python ${experiment.script}`, ...experiment.args].join(" "))],
      ["Directory", experiment.cwd],
      ["Python", `${experiment.python}${experiment.python_version ? ` (${experiment.python_version})` : ""}`],
      ["Exit code", experiment.exit_code ?? (experiment.signal ? `signal ${experiment.signal}` : "")],
      ["Metric", experiment.metric ? `${experiment.metric} = ${formatNumber(experiment.metric_value)}` : ""],
      ["Git", git ? [gitUrl ? el("a", { href: gitUrl, rel: "noopener" }, git.commit.slice(0, 12)) : git.commit.slice(0, 12),
        git.branch ? ` on ${git.branch}` : "", git.dirty ? " (uncommitted changes)" : "", git.url ? ` from ${git.url}` : ""] : ""],
      ["Tags", Object.entries(experiment.tags || {}).map(([name, value]) => `${name}=${value}`).join(", ")],
      ["Hyperparameters", Object.entries(experiment.hyperparameters || {}).map(([name, value]) => `${name}=${value}`).join(", ")],
    ].filter(([, ...value]) => value.some((part) => part !== "" && part !== undefined && part !== null));
    const packages = experiment.pip_freeze || [];
    facts.replaceChildren(
      el("dl", { className: "facts" }, rows.map(([label, ...value]) => [el("dt", {}, label), el("dd", {}, value)])),
      packages.length
        ? el("details", { id: "packages" }, el("summary", {}, `Python packages (${packages.length})`), el("pre", {}, packages.join("\n")))
        : "");
    renderArtifacts(experiment);
  };

  const renderArtifacts = async (experiment) => {
    let list;
    try {
      list = await api(`${path}/artifacts`);
    } catch (error) {
      if (error.status !== 404) throw error;
      const tags = Object.keys(experiment.artifacts || {});
      artifacts.replaceChildren(el("h2", {}, "Artifacts"),
        el("p", { className: "note" }, tags.length ? tags.join(", ") : "This studiod does not list artifacts."));
      return;
    }
    artifacts.replaceChildren(el("h2", {}, "Artifacts"),
      list.length
        ? summaryTable("artifact-list", [
          ["Tag", (artifact) => el("a", { href: `${path}/artifacts/${encodeURIComponent(artifact.tag)}`, download: `${key}-${artifact.tag}.tar.gz` }, artifact.tag)],
          ["Size", (artifact) => formatBytes(artifact.size), "number"],
          ["Files", (artifact) => artifact.files, "number"],
          ["Stored", (artifact) => formatTime(artifact.time)],
          ["Digest", (artifact) => el("code", {}, (artifact.digest || "").slice(0, 16))],
        ], list)
        : el("p", { className: "note" }, "No artifacts stored yet."));
  };

  /// Charts of the TensorBoard scalars of the `tb` artifact, drawn as SVG
  /// by studiod; nothing is shown when the experiment has no scalars.
  const renderCharts = async () => {
    let scalars;
    try {
      scalars = await api(`${path}/scalars`);
    } catch (error) {
      if (error.status === 404) return;
      throw error;
    }
    const tags = Object.keys(scalars || {}).sort();
    if (!tags.length) return;
    charts.replaceChildren(el("h2", {}, "Scalars"), ...tags.map((tag) => {
      const image = el("img", { alt: `${tag} by step`, src: `${path}/scalars.svg?${new URLSearchParams({ tag })}` });
      image.addEventListener("error", () => image.replaceWith(el("p", { className: "note" }, `${tag}: ${scalars[tag].length} values`)));
      return image;
    }));
  };

  /// Shows the last OUTPUT_TAIL_BYTES of the output, then follows it with
  /// Server-Sent Events until the experiment ends.
  const followOutput = async () => {
    const head = await fetch(`${path}/output?length=0`);
    const size = Number(head.headers.get("x-output-size") || 0);
    const offset = Math.max(0, size - OUTPUT_TAIL_BYTES);
    if (offset > 0) outputNote.textContent = `The first ${formatBytes(offset)} of output are not shown; download all of it from ${path}/output.`;
    const stream = new EventSource(`${path}/output?offset=${offset}`);
    pageResources.push(stream);
    stream.addEventListener("output", (event) => {
      const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
      output.append(JSON.parse(event.data).text);
      if (atBottom) output.scrollTop = output.scrollHeight;
    });
    stream.addEventListener("end", (event) => {
      stream.close();
      output.dataset.ended = JSON.parse(event.data).status;
    });
  };

  await render();
  if (main.querySelector("#gone")) return;
  main.replaceChildren(header, tensorboard, facts, artifacts, charts, el("h2", {}, "Output"), outputNote, output);
  followOutput().catch(showError);
  renderCharts().catch(showError);
  onEvent = (envelope) => {
    if (envelope && envelope.key !== key) return;
    render().catch(showError);
    // Scalars change when the `tb` artifact is stored again.
    renderCharts().catch(showError);
  };
}

// ---------------------------------------------------------------- router

const routes = [
  [/^#?\/?$/, () => experimentsPage("My experiments", daemonInfo && daemonInfo.user ? { owner: daemonInfo.user } : {}), "mine"],
  [/^#\/all$/, () => experimentsPage("All experiments", {}), "all"],
  [/^#\/projects$/, projectsPage, "projects"],
  [/^#\/project\/(.+)$/, (name) => projectPage(name), "projects"],
  [/^#\/users$/, usersPage, "users"],
  [/^#\/user\/(.+)$/, (name) => experimentsPage(`Experiments of ${name}`, { owner: name }), "users"],
  [/^#\/experiment\/(.+)$/, (key) => experimentPage(key), null],
];

async function route() {
  for (const resource of pageResources) resource.close();
  pageResources = [];
  onEvent = null;
  showError(null);
  const hash = window.location.hash || "#/";
  for (const [pattern, page, nav] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const item of document.querySelectorAll("header nav a")) item.classList.toggle("active", item.dataset.nav === nav);
    try {
      await page(...match.slice(1).map(decodeURIComponent));
    } catch (error) {
      showError(error);
    }
    return;
  }
  main.replaceChildren(el("h1", {}, "Page not found"), el("p", {}, el("a", { href: "#/" }, "Back to your experiments")));
}

/// Subscribes to /api/v1/events and lets the current page refresh itself,
/// at most every 300 ms however many events arrive.
function listen() {
  const indicator = document.getElementById("live");
  const stream = new EventSource("/api/v1/events");
  let timer = null;
  /// The event to pass on: the last one while all events in the window
  /// belong to one experiment, else null, which makes the page refresh as
  /// a whole.
  let pending;
  const schedule = (envelope) => {
    const sameKey = pending === undefined || (pending && envelope && pending.key === envelope.key);
    pending = sameKey ? envelope : null;
    if (timer) return;
    timer = setTimeout(() => {
      const event = pending;
      timer = null;
      pending = undefined;
      if (onEvent) Promise.resolve(onEvent(event)).catch(showError);
    }, 300);
  };
  stream.addEventListener("open", () => indicator.classList.add("on"));
  stream.addEventListener("error", () => indicator.classList.remove("on"));
  stream.onmessage = (event) => schedule(JSON.parse(event.data));
  const kinds = ["ExperimentCreated", "ExperimentStarted", "EnvironmentRecorded", "GitRecorded", "TagsChanged",
    "StopRequested", "ExperimentFinished", "ExperimentInterrupted", "ExperimentDeleted", "ArtifactStored", "ExperimentQueued",
    "MetricReported"];
  for (const kind of kinds) stream.addEventListener(kind, (event) => schedule(JSON.parse(event.data)));
  // A lagged stream skipped events: refresh everything.
  stream.addEventListener("lagged", () => schedule(null));
}

/// Moves a `#token=…` from the address into local storage, so the token
/// does not stay in the address bar or the history.
function takeToken() {
  const match = window.location.hash.match(/^#token=([0-9a-f]+)$/);
  if (!match) return;
  localStorage.setItem(TOKEN_KEY, match[1]);
  history.replaceState(null, "", `${window.location.pathname}#/`);
}

async function start() {
  takeToken();
  try {
    daemonInfo = await api("/api/v1/daemon");
    document.getElementById("daemon").textContent = `${daemonInfo.user || ""}@${daemonInfo.host} · studiod ${daemonInfo.version}`;
  } catch (error) {
    showError(error);
  }
  window.addEventListener("hashchange", route);
  listen();
  await route();
}

start();
