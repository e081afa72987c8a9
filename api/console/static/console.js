/* facmon console: one small script for every page (no build step, no dependencies).
 *
 * The bearer token lives in sessionStorage (this tab only) and goes to the JSON API in the
 * Authorization header; the pages are empty shells this script fills. Text from the server is
 * only ever set as textContent, never parsed as HTML.
 */
(() => {
  "use strict";

  const CFG = JSON.parse(document.getElementById("facmon-config").textContent);
  const KEY_TOKEN = "facmon.token";
  const KEY_ME = "facmon.me";
  const KEY_LANG = "facmon.lang";
  // The list shows the quick steps of a visit; the rest need the ticket's own page.
  const LIST_ACTIONS = ["accept", "arrived", "start", "resume", "resolve"];
  const DETAIL_ACTIONS = [
    "accept", "arrived", "start", "hold", "resume", "resolve", "assign", "close", "cancel",
  ];
  // What an action asks for before it is sent: fields of the action's JSON body.
  const ASK = {
    resolve: [{ name: "note", label: "field_note_resolve", type: "textarea", required: true }],
    close: [{ name: "note", label: "field_note_close", type: "textarea", required: true }],
    hold: [
      { name: "reason", label: "field_reason", type: "text", required: true },
      { name: "resume_at", label: "field_resume_at", type: "datetime-local", required: true },
    ],
    cancel: [{ name: "reason", label: "field_reason", type: "textarea", required: true }],
    assign: [
      { name: "assignee", label: "field_assignee", type: "text", required: true },
      { name: "note", label: "field_note", type: "text", required: false },
    ],
  };
  const REPORTS = ["energy", "savings", "uptime", "water", "maintenance", "monthly"];

  let lang = CFG.labels[localStorage.getItem(KEY_LANG)] ? localStorage.getItem(KEY_LANG) : CFG.lang;
  let rerender = () => {};

  // -- helpers ------------------------------------------------------------------------------
  function t(key, vars) {
    let s = CFG.labels[lang][key];
    if (s === undefined) return key;
    for (const [k, v] of Object.entries(vars || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }

  function label(prefix, value) {
    const key = prefix + value;
    return CFG.labels[lang][key] === undefined ? String(value) : t(key);
  }

  function applyLabels() {
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    document.title = t("page_" + CFG.page) + " · " + CFG.site;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(4)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function show(id, text) {
    const node = document.getElementById(id);
    if (!node) return;
    node.textContent = text || "";
    node.hidden = !text;
  }

  let toastTimer = 0;
  function toast(text) {
    const node = document.getElementById("toast");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 4000);
  }

  // Site time as 2024-03-03 15:30 in both languages: unambiguous, and what the reports print.
  const SITE_TIME = new Intl.DateTimeFormat("en-CA", {
    timeZone: CFG.tz, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const p = Object.fromEntries(SITE_TIME.formatToParts(d).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  }

  function fmtAge(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return t("u_s", { n: s });
    if (s < 90 * 60) return t("u_min", { n: Math.round(s / 60) });
    if (s < 36 * 3600) return t("u_h", { n: Math.round(s / 3600) });
    return t("u_d", { n: Math.round(s / 86400) });
  }

  function fmtNumber(v) {
    return v.toLocaleString(lang, { maximumFractionDigits: 3 });
  }

  // A date (YYYY-MM-DD) in the site's time zone.
  function siteDate(d) {
    return new Intl.DateTimeFormat("en-CA", {
      timeZone: CFG.tz, year: "numeric", month: "2-digit", day: "2-digit",
    }).format(d);
  }

  // -- session and API ----------------------------------------------------------------------
  const session = {
    get token() { return sessionStorage.getItem(KEY_TOKEN); },
    get me() {
      try { return JSON.parse(sessionStorage.getItem(KEY_ME)); } catch { return null; }
    },
    save(token, me) {
      sessionStorage.setItem(KEY_TOKEN, token);
      sessionStorage.setItem(KEY_ME, JSON.stringify(me));
    },
    saveMe(me) { sessionStorage.setItem(KEY_ME, JSON.stringify(me)); },
    clear() {
      sessionStorage.removeItem(KEY_TOKEN);
      sessionStorage.removeItem(KEY_ME);
    },
  };

  // To the sign-in page; ``back`` returns here after signing in (not after signing out).
  function toLogin(reason, back = true) {
    session.clear();
    const q = new URLSearchParams();
    if (reason) q.set("reason", reason);
    if (back && CFG.page !== "login") q.set("next", location.pathname + location.search);
    const query = q.toString();
    location.assign(CFG.console + "/login" + (query ? "?" + query : ""));
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function call(path, { method = "GET", body, token = session.token, raw = false } = {}) {
    const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(CFG.api + path, init);
    } catch {
      throw new ApiError(0, "network", t("error_network"));
    }
    if (resp.ok) return raw ? resp : resp.json();
    let err = null;
    try {
      err = (await resp.json()).error;
    } catch {
      // Not our error shape (a proxy's page, say): fall back to the status line.
    }
    if (resp.status === 401 && CFG.page !== "login") toLogin("expired");
    throw new ApiError(
      resp.status,
      err ? err.code : "http_" + resp.status,
      err ? err.message : resp.status + " " + resp.statusText,
    );
  }

  function renderWho(me) {
    const who = document.getElementById("who");
    if (who && me) who.textContent = t("signed_in_as", { name: me.name, role: label("role_", me.role) });
    const ro = document.getElementById("read-only");
    if (ro) ro.hidden = !me || Object.keys(me.actions).length > 0;
  }

  // -- ticket actions -----------------------------------------------------------------------
  function allowed(me, action, status) {
    return Boolean(me && me.actions[action] && me.actions[action].includes(status));
  }

  // Asks for the fields an action needs in a modal dialog; resolves to the body, or null.
  function ask(action, ticket) {
    return new Promise((resolve) => {
      let result = null;
      const inputs = {};
      const error = el("p", { class: "message error", role: "alert", hidden: true });
      const dialog = el("dialog", { "aria-label": t("act_" + action) });
      const form = el(
        "form",
        { class: "stack", novalidate: true },
        el("h2", { text: t("act_" + action) + " · " + ticket.number }),
        ASK[action].map((f) => {
          const id = "field-" + f.name;
          const input = f.type === "textarea"
            ? el("textarea", { id, name: f.name, required: f.required })
            : el("input", { id, name: f.name, type: f.type, required: f.required });
          inputs[f.name] = input;
          return [el("label", { for: id, text: t(f.label) }), input];
        }),
        error,
        el(
          "div",
          { class: "actions" },
          el("button", { type: "submit", class: "primary", text: t("confirm") }),
          el("button", { type: "button", text: t("dismiss"), onclick: () => dialog.close() }),
        ),
      );
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const body = {};
        for (const f of ASK[action]) {
          const value = inputs[f.name].value.trim();
          if (f.required && !value) {
            error.textContent = t("field_required");
            error.hidden = false;
            inputs[f.name].focus();
            return;
          }
          if (value) body[f.name] = value;
        }
        result = body;
        dialog.close();
      });
      dialog.addEventListener("close", () => {
        dialog.remove();
        resolve(result);
      });
      dialog.append(form);
      document.body.append(dialog);
      dialog.showModal();
    });
  }

  // Runs ``action`` on ``ticket``; returns the updated ticket, or null (refused, dismissed).
  async function runAction(ticket, action) {
    show("message", "");
    let body = {};
    if (ASK[action]) {
      body = await ask(action, ticket);
      if (body === null) return null;
    }
    try {
      const updated = await call(`/tickets/${ticket.id}/${action}`, { method: "POST", body });
      toast(t("done_" + action, { n: ticket.number }));
      return updated;
    } catch (e) {
      if (e.status === 401) return null;
      let text;
      if (e.status === 403) {
        text = t("forbidden", { m: e.message });
      } else if (e.status === 409) {
        // Someone else may have moved it meanwhile: name the status it has now.
        const now = await call("/tickets/" + ticket.id).catch(() => ticket);
        text = t("refused", {
          n: ticket.number, s: label("status_", now.status), a: t("act_" + action), m: e.message,
        });
      } else {
        text = t("failed", { m: e.message });
      }
      show("message", text);
      return null;
    }
  }

  function actionButtons(me, ticket, actions, onAction) {
    const buttons = actions
      .filter((a) => allowed(me, a, ticket.status))
      .map((a) => el("button", {
        type: "button",
        class: a === "resolve" ? "good" : (a === "accept" ? "primary" : null),
        dataset: { action: a },
        text: t("act_" + a),
        onclick: async (ev) => {
          const group = ev.currentTarget.parentElement;
          for (const b of group.querySelectorAll("button")) b.disabled = true;
          try {
            await onAction(a);
          } finally {
            for (const b of group.querySelectorAll("button")) b.disabled = false;
          }
        },
      }));
    return buttons.length ? el("div", { class: "actions" }, buttons) : null;
  }

  // -- pages --------------------------------------------------------------------------------
  function loginPage() {
    const params = new URLSearchParams(location.search);
    const form = document.getElementById("login-form");
    const input = document.getElementById("token");
    let messageKey = params.get("reason") === "expired" ? "session_expired" : null;
    let messageText = null;
    const render = () => show("login-message", messageKey ? t(messageKey) : messageText);
    rerender = render;
    render();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      messageKey = null;
      messageText = null;
      if (!token) {
        messageKey = "empty_token";
        render();
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const me = await call("/me", { token });
        session.save(token, me);
        const next = params.get("next") || "";
        // Only ever back into the console: never an address someone put in the link.
        const safe = next.startsWith(CFG.console + "/") && !next.startsWith("//");
        location.assign(safe ? next : CFG.console + "/tickets");
        return;
      } catch (e) {
        if (e.status === 401) messageKey = "bad_token";
        else messageText = e.message;
        render();
      } finally {
        button.disabled = false;
      }
    });
  }

  async function ticketsPage() {
    const list = document.getElementById("tickets");
    let me = session.me;
    let page = null;

    function card(tk) {
      const meta = [tk.device, tk.building, t("due", { t: fmtTime(tk.due_at) })];
      if (tk.occurrences > 1) meta.push(t("occurrences", { n: tk.occurrences }));
      return el(
        "li",
        { class: "card ticket", dataset: { ticketId: tk.id, status: tk.status } },
        el(
          "div",
          { class: "row" },
          el("span", { class: "badge prio-" + tk.priority, text: tk.priority }),
          el("a", { class: "number", href: CFG.console + "/tickets/" + tk.id, text: tk.number }),
          el("span", { class: "badge status", text: label("status_", tk.status) }),
          tk.overdue && el("span", { class: "badge overdue", text: t("overdue") }),
        ),
        el("p", { class: "title", text: tk.title }),
        el("p", { class: "meta", text: meta.join(" · ") }),
        actionButtons(me, tk, LIST_ACTIONS, async (a) => {
          await runAction(tk, a);
          await load(); // also after a refusal: the ticket may have moved under us
        }),
      );
    }

    function render() {
      renderWho(me);
      list.replaceChildren();
      if (!page) return;
      if (!page.items.length) list.append(el("li", { class: "card hint", text: t("no_tickets") }));
      for (const tk of page.items) list.append(card(tk));
    }

    async function load() {
      try {
        [me, page] = await Promise.all([call("/me"), call("/tickets?status=open&limit=200")]);
        session.saveMe(me);
      } catch (e) {
        if (e.status !== 401) show("message", e.message);
      } finally {
        document.getElementById("loading").hidden = true;
      }
      render();
    }

    rerender = render;
    document.getElementById("refresh").addEventListener("click", () => {
      show("message", "");
      load();
    });
    await load();
  }

  async function ticketPage() {
    const box = document.getElementById("ticket");
    let me = session.me;
    let tk = null;
    let missing = false;

    function render() {
      renderWho(me);
      box.replaceChildren();
      if (missing) {
        box.append(el("p", { class: "message error", text: t("not_found") }));
        return;
      }
      if (!tk) return;
      document.title = tk.number + " · " + CFG.site;
      const field = (key, value) => [el("dt", { text: t("f_" + key) }), el("dd", {}, value)];
      box.append(
        el(
          "div",
          { class: "card" },
          el("h1", { text: tk.number + " · " + label("status_", tk.status) }),
          el(
            "dl",
            { class: "fields" },
            field("title", tk.title),
            field("device", tk.device),
            field("building", tk.building),
            field("fault_class", tk.fault_class),
            field("priority", el("span", { class: "badge prio-" + tk.priority, text: tk.priority })),
            field("status", label("status_", tk.status)),
            field("created_at", fmtTime(tk.created_at)),
            field("due_at", [
              fmtTime(tk.due_at), " ",
              tk.overdue && el("span", { class: "badge overdue", text: t("overdue") }),
            ]),
            field("updated_at", fmtTime(tk.updated_at)),
            field("occurrences", String(tk.occurrences)),
          ),
          actionButtons(me, tk, DETAIL_ACTIONS, async (a) => {
            const updated = await runAction(tk, a);
            if (updated) {
              tk = updated;
              render();
            } else {
              await load();
            }
          }),
        ),
        el("h2", { text: t("history") }),
        el(
          "ol",
          { class: "events" },
          tk.events.map((e) => el(
            "li",
            { class: "event", dataset: { kind: e.kind } },
            el("div", { class: "when", text: fmtTime(e.at) + " · " + e.who }),
            el("div", { class: "kind", text: label("ev_", e.kind) }),
            e.note && el("div", { class: "note", text: e.note }),
          )),
        ),
      );
    }

    async function load() {
      try {
        [me, tk] = await Promise.all([call("/me"), call("/tickets/" + CFG.ticketId)]);
        session.saveMe(me);
      } catch (e) {
        if (e.status === 404) missing = true;
        else if (e.status !== 401) show("message", e.message);
      } finally {
        document.getElementById("loading").hidden = true;
      }
      render();
    }

    rerender = render;
    await load();
  }

  async function devicesPage() {
    const list = document.getElementById("devices");
    let devices = null;
    let lastOk = {};

    // Online: the collector's latest device_up says it answered, and that sample is recent.
    function stateOf(d) {
      if (d.status.state === "unknown") return "unknown";
      return d.status.state === "up" && !d.status.stale ? "online" : "offline";
    }

    function detail(d, state) {
      if (state === "unknown") return t("never_seen");
      const parts = [t("last_seen", { x: fmtAge(d.status.age_s) })];
      if (d.status.stale) parts.push(t("stale"));
      const ok = lastOk[d.id];
      if (state === "offline" && ok && ok.value !== null) {
        // last_ok_age is counted at its own sample; add that sample's age.
        parts.push(t("last_ok", { x: fmtAge(ok.value + ok.age_s) }));
      }
      return parts.join(" · ");
    }

    function render() {
      renderWho(session.me);
      list.replaceChildren();
      if (!devices) return;
      const counts = { online: 0, offline: 0, unknown: 0 };
      for (const d of devices) {
        const state = stateOf(d);
        counts[state] += 1;
        const where = [label("kind_", d.kind), d.location.building, t("floor", { f: d.location.floor })];
        if (d.location.tenant) where.push(d.location.tenant);
        list.append(el(
          "li",
          { class: "card device", dataset: { device: d.id, state } },
          el(
            "div",
            {},
            el("div", { class: "name", text: d.name }),
            el("div", { class: "meta", text: d.id + " · " + where.join(" · ") }),
            el("div", { class: "meta detail", text: detail(d, state) }),
          ),
          el("span", { class: "state state-" + state, text: t(state) }),
        ));
      }
      show("summary", t("summary", { on: counts.online, off: counts.offline, unk: counts.unknown }));
    }

    async function load() {
      try {
        const [d, r] = await Promise.all([
          call("/devices"),
          call("/readings/latest?metric=last_ok_age").catch(() => ({ items: [] })),
        ]);
        devices = d.items;
        lastOk = Object.fromEntries(r.items.map((x) => [x.device, x]));
      } catch (e) {
        if (e.status !== 401) show("message", e.message);
      } finally {
        document.getElementById("loading").hidden = true;
      }
      render();
    }

    rerender = render;
    document.getElementById("refresh").addEventListener("click", () => {
      show("message", "");
      load();
    });
    await load();
  }

  // -- reports ------------------------------------------------------------------------------
  function isScalar(v) {
    return v === null || typeof v !== "object";
  }

  function scalar(v) {
    if (v === null || v === undefined) return el("span", { class: "hint", text: "—" });
    if (typeof v === "boolean") return t(v ? "yes" : "no");
    if (typeof v === "number") return fmtNumber(v);
    if (typeof v === "string" && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(v)) return fmtTime(v);
    return String(v);
  }

  function cell(tag, v) {
    if (isScalar(v)) return el(tag, { class: typeof v === "number" ? "num" : null }, scalar(v));
    const n = Array.isArray(v) ? v.length : Object.keys(v).length;
    if (n === 0) return el(tag, { class: "hint", text: t("none") });
    return el(tag, {}, el("details", {}, el("summary", { text: t("items", { n }) }), renderValue(v, 3)));
  }

  function table(head, rows) {
    return el("div", { class: "table-wrap" }, el(
      "table",
      {},
      head && el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows),
    ));
  }

  // Any JSON as tables: objects as key/value rows (nested parts as sections), lists of
  // objects as one row each.
  function renderValue(v, depth) {
    if (isScalar(v)) return el("p", {}, scalar(v));
    if (depth > 6) return el("pre", { text: JSON.stringify(v, null, 2) });
    if (Array.isArray(v)) {
      if (!v.length) return el("p", { class: "hint", text: t("none") });
      if (v.every(isScalar)) return el("p", { text: v.map(scalar).join(", ") });
      if (v.every((x) => !isScalar(x) && !Array.isArray(x))) {
        const cols = [...new Set(v.flatMap((x) => Object.keys(x)))];
        return table(cols, v.map((x) => el("tr", {}, cols.map((c) => cell("td", x[c] ?? null)))));
      }
      return el("ol", {}, v.map((x) => el("li", {}, renderValue(x, depth + 1))));
    }
    const flat = Object.entries(v).filter(([, x]) => isScalar(x));
    const nested = Object.entries(v).filter(([, x]) => !isScalar(x));
    return el(
      "div",
      {},
      flat.length ? table(null, flat.map(([k, x]) => el("tr", {}, el("th", { scope: "row", text: k }), cell("td", x)))) : null,
      nested.map(([k, x]) => el("section", {}, el(depth < 2 ? "h2" : "h3", { text: k }), renderValue(x, depth + 1))),
    );
  }

  async function reportsPage() {
    renderWho(session.me);
    call("/me").then((me) => { session.saveMe(me); renderWho(me); }).catch(() => {});
    const select = document.getElementById("report");
    const params = document.getElementById("params");
    const out = document.getElementById("report-output");
    const endpoint = document.getElementById("endpoint");
    const known = {}; // report name -> query parameters from the OpenAPI schema
    const values = {}; // what was typed, per report and parameter, kept across switches

    try {
      const resp = await fetch("/openapi.json");
      const schema = resp.ok ? await resp.json() : { paths: {} };
      const prefix = CFG.api + "/reports/";
      for (const [path, item] of Object.entries(schema.paths || {})) {
        const name = path.slice(prefix.length);
        if (path.startsWith(prefix) && item.get && /^[\w-]+$/.test(name)) {
          known[name] = (item.get.parameters || []).filter((p) => p.in === "query");
        }
      }
    } catch {
      // No schema: every report gets start and end, and the server says what else it needs.
    }
    const names = [...new Set([...REPORTS, ...Object.keys(known).sort()])];

    const today = siteDate(new Date());
    const thisMonth = today.slice(0, 7);
    const y = Number(today.slice(0, 4));
    const m = Number(today.slice(5, 7));
    const lastMonth = m === 1 ? `${y - 1}-12` : `${y}-${String(m - 1).padStart(2, "0")}`;
    const DEFAULTS = { start: lastMonth + "-01", end: thisMonth + "-01", month: lastMonth };

    function paramsOf(name) {
      return known[name] || [
        { name: "start", required: true, schema: { type: "string" } },
        { name: "end", required: true, schema: { type: "string" } },
      ];
    }

    function input(name, p) {
      const id = "param-" + p.name;
      const s = p.schema || {};
      const options = s.enum || (s.anyOf || []).flatMap((x) => x.enum || []);
      const saved = (values[name] || {})[p.name];
      // A month and a start/end pair are alternatives: suggest the pair when both exist.
      const both = p.name === "month" && paramsOf(name).some((x) => x.name === "start");
      const suggested = p.name === "lang" ? lang : (both ? "" : DEFAULTS[p.name]);
      const initial = saved ?? s.default ?? suggested ?? "";
      let control;
      if (options.length || s.type === "boolean") {
        const choices = options.length ? options : [true, false];
        control = el(
          "select",
          { id, name: p.name },
          p.required ? null : el("option", { value: "", text: "—" }),
          choices.map((o) => el("option", { value: String(o), text: String(o) })),
        );
      } else {
        const type = p.name === "month" ? "month" : (["start", "end"].includes(p.name) ? "date" : "text");
        control = el("input", { id, name: p.name, type });
      }
      control.value = String(initial);
      control.addEventListener("change", () => {
        values[name] = { ...(values[name] || {}), [p.name]: control.value };
      });
      const hint = p.description || (p.schema && p.schema.description);
      return [
        el("label", { for: id, text: p.name + (p.required ? " *" : "") }),
        control,
        hint ? el("p", { class: "hint", text: hint }) : null,
      ];
    }

    function renderForm() {
      for (const opt of select.options) opt.textContent = label("report_", opt.value);
      params.replaceChildren(...paramsOf(select.value).map((p) => input(select.value, p)).flat(2).filter(Boolean));
    }

    function query() {
      const q = new URLSearchParams();
      for (const node of params.querySelectorAll("input, select")) {
        if (node.value !== "") q.set(node.name, node.value);
      }
      return q;
    }

    async function run() {
      const name = select.value;
      const path = "/reports/" + name + "?" + query();
      endpoint.textContent = "GET " + CFG.api + path;
      show("message", "");
      out.replaceChildren(el("p", { class: "hint", text: t("loading") }));
      try {
        const resp = await call(path, { raw: true });
        const type = resp.headers.get("content-type") || "";
        if (type.includes("json")) {
          out.replaceChildren(el("h2", { text: label("report_", name) }), renderValue(await resp.json(), 1));
          return;
        }
        // HTML or PDF: the token cannot ride along on a plain link, so hand over the bytes.
        const url = URL.createObjectURL(await resp.blob());
        const ext = type.includes("pdf") ? "pdf" : (type.includes("html") ? "html" : "bin");
        out.replaceChildren(
          el("p", {}, el("a", {
            class: "button-link", href: url, target: "_blank", download: `${name}.${ext}`, text: t("open_report"),
          })),
          type.includes("html") ? el("iframe", { src: url, sandbox: "", title: label("report_", name) }) : null,
        );
      } catch (e) {
        out.replaceChildren();
        if (e.status === 401) return;
        if ((e.status === 404 && !(name in known)) || e.status === 405 || e.status === 501) {
          show("message", t("report_unavailable"));
        } else if (e.status === 400) {
          show("message", t("report_bad_request", { m: e.message }));
        } else {
          show("message", t("report_failed", { m: e.message }));
        }
      }
    }

    select.replaceChildren(...names.map((n) => el("option", { value: n, text: label("report_", n) })));
    select.addEventListener("change", () => {
      out.replaceChildren();
      show("message", "");
      endpoint.textContent = "";
      renderForm();
    });
    document.getElementById("report-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      run();
    });
    rerender = () => {
      renderWho(session.me);
      renderForm();
    };
    renderForm();
  }

  // -- start --------------------------------------------------------------------------------
  applyLabels();
  document.getElementById("lang-toggle").addEventListener("click", () => {
    lang = lang === "zh-CN" ? "en" : "zh-CN";
    localStorage.setItem(KEY_LANG, lang);
    applyLabels();
    rerender();
  });
  const signOut = document.getElementById("sign-out");
  if (signOut) signOut.addEventListener("click", () => toLogin(null, false));

  const pages = {
    login: loginPage,
    tickets: ticketsPage,
    ticket: ticketPage,
    devices: devicesPage,
    reports: reportsPage,
  };
  if (CFG.page !== "login" && !session.token) {
    toLogin(null);
    return;
  }
  Promise.resolve(pages[CFG.page]()).catch((e) => show("message", e.message));
})();
