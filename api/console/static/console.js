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
    "accept", "arrived", "start", "hold", "resume", "resolve", "follow_up", "assign", "close",
    "cancel", "reopen",
  ];
  const ROLES = ["viewer", "technician", "manager", "admin"]; // least to most, as api/auth.py
  // Reopening is a manager's call outside the lifecycle moves /me lists (POST .../reopen).
  const REOPENABLE = ["RESOLVED", "CLOSED"];
  // What an action asks for before it is sent: fields of the action's JSON body.
  const ASK = {
    resolve: [{ name: "note", label: "field_note_resolve", type: "textarea", required: true }],
    close: [{ name: "note", label: "field_note_close", type: "textarea", required: true }],
    hold: [
      { name: "reason", label: "field_reason", type: "text", required: true },
      { name: "resume_at", label: "field_resume_at", type: "datetime-local", required: true },
    ],
    cancel: [{ name: "reason", label: "field_reason", type: "textarea", required: true }],
    reopen: [{ name: "note", label: "field_note_reopen", type: "textarea", required: true }],
    follow_up: [{ name: "note", label: "field_note_follow_up", type: "textarea", required: true }],
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

  function atLeast(me, role) {
    return Boolean(me) && ROLES.indexOf(me.role) >= ROLES.indexOf(role);
  }

  // A labelled form control for a field {name, label, type, required, options}; options are
  // [value, text] pairs of a select.
  function control(f, id) {
    if (f.type === "textarea") return el("textarea", { id, name: f.name, required: f.required });
    if (f.type === "select") {
      return el(
        "select",
        { id, name: f.name, required: f.required },
        f.options.map(([value, text]) => el("option", { value, text })),
      );
    }
    return el("input", { id, name: f.name, type: f.type, required: f.required, list: f.list });
  }

  // -- list pages -----------------------------------------------------------------------------
  // Labelled controls for the fields of a "new ..." form (ids prefix-name), showing and keeping
  // in ``typed`` what was entered, so a language switch that rebuilds the form loses nothing.
  function formControls(fields, prefix, typed) {
    return fields.flatMap((f) => {
      const id = prefix + "-" + f.name.replace("_", "-");
      const input = control(f, id);
      if (typed[f.name] !== undefined) input.value = typed[f.name];
      input.addEventListener("input", () => { typed[f.name] = input.value; });
      return [el("label", { for: id, text: t(f.label) }), input];
    });
  }

  // Sends a "new ..." form through ``send``: its submit button is off meanwhile, and a refusal
  // is shown by ``fail``.
  async function submitForm(form, fail, send) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await send();
    } catch (e) {
      if (e.status !== 401) fail(failure(e));
    } finally {
      button.disabled = false;
    }
  }

  // The caller (GET /me) and a page of a list; null after showing why not.
  async function meAndPage(path) {
    try {
      const [me, page] = await Promise.all([call("/me"), call(path)]);
      session.saveMe(me);
      return { me, page };
    } catch (e) {
      if (e.status !== 401) show("message", e.message);
      return null;
    } finally {
      document.getElementById("loading").hidden = true;
    }
  }

  // Fills a list with a card per item, or the hint ``emptyKey`` when there is none.
  function fillCards(list, page, emptyKey, card) {
    list.replaceChildren();
    if (!page) return;
    if (!page.items.length) list.append(el("li", { class: "card hint", text: t(emptyKey) }));
    for (const item of page.items) list.append(card(item));
  }

  // Loads again on the refresh button and on a change of any filter select.
  function reloadOn(load, ...selects) {
    const again = () => {
      show("message", "");
      load();
    };
    for (const sel of selects) sel.addEventListener("change", again);
    document.getElementById("refresh").addEventListener("click", again);
  }

  // What "new ..." forms offer: the site's devices and the fault classes tickets have used.
  // Either is empty when its request fails: the form still works, with less help.
  async function formChoices() {
    const [devices, faultClasses] = await Promise.all([
      call("/devices").then((d) => d.items, () => []),
      call("/tickets?limit=200").then((p) => [...new Set(p.items.map((x) => x.fault_class))].sort(), () => []),
    ]);
    return { devices, faultClasses };
  }

  // A list card: a row of badges, a title, a line of meta text, then anything else.
  function listCard(cls, dataset, badges, title, meta, ...rest) {
    return el(
      "li",
      { class: "card " + cls, dataset },
      el("div", { class: "row" }, ...badges),
      el("p", { class: "title", text: title }),
      el("p", { class: "meta", text: meta }),
      ...rest,
    );
  }

  // -- ticket actions -----------------------------------------------------------------------
  function allowed(me, action, status) {
    if (action === "reopen") return atLeast(me, "manager") && REOPENABLE.includes(status);
    return Boolean(me && me.actions[action] && me.actions[action].includes(status));
  }

  // The call-back (回访) is offered where it is owed: a tenant's ticket once it is resolved. The
  // API takes it on any resolved or closed ticket.
  function offered(me, action, ticket) {
    if (action === "follow_up" && (ticket.source !== "tenant" || ticket.status !== "RESOLVED")) {
      return false;
    }
    return allowed(me, action, ticket.status);
  }

  // Asks for the fields an action needs in a modal dialog; resolves to the body, or null.
  function ask(action, ticket) {
    return askFields(t("act_" + action), ticket.number, ASK[action]);
  }

  // A modal dialog titled "title · subject" asking for ``fields`` (none: just a confirmation);
  // resolves to {name: value} of the filled ones, or null when dismissed.
  function askFields(title, subject, fields) {
    return new Promise((resolve) => {
      let result = null;
      const inputs = {};
      const error = el("p", { class: "message error", role: "alert", hidden: true });
      const dialog = el("dialog", { "aria-label": title });
      const form = el(
        "form",
        { class: "stack", novalidate: true },
        el("h2", { text: title + " · " + subject }),
        fields.map((f) => {
          const id = "field-" + f.name;
          const input = control(f, id);
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
        for (const f of fields) {
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
        // Someone else may have moved it meanwhile: name the status it has now. When the
        // status allows the action, something else refused it (a tenant's close waits for the
        // follow-up, T5): the server's words say what.
        const now = await call("/tickets/" + ticket.id).catch(() => ticket);
        text = allowed(session.me, action, now.status)
          ? t("failed", { m: e.message })
          : t("refused", {
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
      .filter((a) => offered(me, a, ticket))
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
    const details = document.getElementById("new-ticket");
    const form = document.getElementById("ticket-form");
    let me = session.me;
    let page = null;
    let devices = [];
    let faultClasses = [];
    const typed = {}; // what was entered in the new-ticket form, kept across a language switch

    const FIELDS = () => [
      {
        name: "device", label: "f_device", type: "select", required: true,
        options: [["", "—"], ...devices.map((d) => [d.id, d.id + " · " + d.name])],
      },
      { name: "fault_class", label: "f_fault_class", type: "text", required: true, list: "ticket-fault-classes" },
      { name: "title", label: "f_title", type: "text", required: true },
      {
        name: "priority", label: "f_priority", type: "select", required: true,
        options: ["P3", "P2", "P1"].map((p) => [p, label("prio_", p)]),
      },
      { name: "note", label: "field_note_new", type: "textarea" },
    ];

    function renderForm() {
      const error = el("p", { class: "message error", id: "ticket-error", role: "alert", hidden: true });
      const tenant = el("input", {
        id: "ticket-tenant", name: "tenant", type: "checkbox", checked: typed.tenant === true,
      });
      const requester = el("input", { id: "ticket-requester", name: "requester", type: "text" });
      if (typed.requester !== undefined) requester.value = typed.requester;
      const requesterBox = el(
        "div",
        { class: "stack", id: "requester-box", hidden: !tenant.checked },
        el("label", { for: "ticket-requester", text: t("field_requester") }),
        requester,
      );
      tenant.addEventListener("change", () => {
        typed.tenant = tenant.checked;
        requesterBox.hidden = !tenant.checked;
      });
      requester.addEventListener("input", () => { typed.requester = requester.value; });
      form.replaceChildren(
        ...formControls(FIELDS(), "ticket", typed),
        el("datalist", { id: "ticket-fault-classes" }, faultClasses.map((c) => el("option", { value: c }))),
        el("div", { class: "check" }, tenant, el("label", { for: "ticket-tenant", text: t("field_tenant") })),
        requesterBox,
        error,
        el("button", { type: "submit", class: "primary", text: t("create") }),
      );
    }

    async function create(ev) {
      ev.preventDefault();
      const v = Object.fromEntries(new FormData(form).entries());
      const fail = (text) => show("ticket-error", text);
      const tenant = Boolean(v.tenant);
      const body = {
        device: String(v.device || ""),
        fault_class: String(v.fault_class || "").trim(),
        title: String(v.title || "").trim(),
        priority: String(v.priority || "P3"),
        note: String(v.note || "").trim(),
        source: tenant ? "tenant" : "manual",
      };
      if (tenant) body.requester = String(v.requester || "").trim();
      if (!body.device || !body.fault_class || !body.title || (tenant && !body.requester)) {
        return fail(t("field_required"));
      }
      await submitForm(form, fail, async () => {
        const tk = await call("/tickets", { method: "POST", body });
        const merged = tk.occurrences > 1 || tk.status !== "NEW";
        toast(t(merged ? "done_new_ticket_merged" : "done_new_ticket", { n: tk.number }));
        for (const k of Object.keys(typed)) delete typed[k];
        details.open = false;
        renderForm();
        await load();
      });
    }

    function card(tk) {
      const meta = [tk.device, tk.building, t("due", { t: fmtTime(tk.due_at) })];
      if (tk.occurrences > 1) meta.push(t("occurrences", { n: tk.occurrences }));
      return listCard(
        "ticket",
        { ticketId: tk.id, status: tk.status },
        [
          el("span", { class: "badge prio-" + tk.priority, text: tk.priority }),
          el("a", { class: "number", href: CFG.console + "/tickets/" + tk.id, text: tk.number }),
          el("span", { class: "badge status", text: label("status_", tk.status) }),
          tk.source !== "alert" && el("span", { class: "badge source", text: label("source_", tk.source) }),
          tk.overdue && el("span", { class: "badge overdue", text: t("overdue") }),
        ],
        tk.title,
        meta.join(" · "),
        actionButtons(me, tk, LIST_ACTIONS, async (a) => {
          await runAction(tk, a);
          await load(); // also after a refusal: the ticket may have moved under us
        }),
      );
    }

    function render() {
      renderWho(me);
      details.hidden = !atLeast(me, "technician");
      fillCards(list, page, "no_tickets", card);
    }

    async function load() {
      const got = await meAndPage("/tickets?status=open&limit=200");
      if (got) ({ me, page } = got);
      render();
    }

    rerender = () => {
      render();
      renderForm();
    };
    renderForm();
    form.addEventListener("submit", create);
    reloadOn(load);
    formChoices().then((c) => {
      devices = c.devices;
      // Preventive tickets' classes belong to their schedules: nobody opens one by hand.
      faultClasses = c.faultClasses.filter((x) => !x.startsWith("preventive:"));
      renderForm();
    });
    await load();
  }

  // Who was paged about a ticket, how, and whether it arrived (the paging outbox).
  function pagingSection(notes) {
    const items = notes.map((n) => {
      const meta = [label("nkind_", n.kind), t("n_via", { c: n.channel }), fmtTime(n.created_at)];
      if (n.sent_at) meta.push(t("n_sent_at", { t: fmtTime(n.sent_at) }));
      if (n.attempts > 1) meta.push(t("n_attempts", { n: n.attempts }));
      return el(
        "li",
        { class: "notification", dataset: { kind: n.kind, status: n.status, recipient: n.recipient } },
        el(
          "div",
          { class: "row" },
          el("span", { class: "who-paged", text: n.recipient_name }),
          el("span", { class: "badge nstatus-" + n.status, text: label("nstatus_", n.status) }),
        ),
        el("div", { class: "when", text: meta.join(" · ") }),
        n.last_error && n.status !== "sent" && el("div", { class: "note", text: n.last_error }),
      );
    });
    return el(
      "section",
      { class: "paging", id: "paging" },
      el("h2", { text: t("paging") }),
      items.length
        ? el("ol", { class: "notifications" }, items)
        : el("p", { class: "hint", text: t("no_notifications") }),
    );
  }

  async function ticketPage() {
    const box = document.getElementById("ticket");
    let me = session.me;
    let tk = null;
    let notes = null; // null: not loaded (or an older server without the route)
    let missing = false;

    // Secondary: the ticket still shows when this fails.
    async function loadNotes() {
      return call(`/tickets/${CFG.ticketId}/notifications`).then((r) => r.items, () => null);
    }

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
            field("device", [
              tk.device,
              // The server builds the address from grafana.url; only a web address is a link.
              /^https?:\/\//i.test(tk.grafana_url || "") && [" ", el("a", {
                class: "button-link grafana-link", href: tk.grafana_url, target: "_blank", rel: "noopener",
                text: t("grafana_panel"),
              })],
            ]),
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
            field("source", label("source_", tk.source)),
            tk.requester && field("requester", tk.requester),
          ),
          actionButtons(me, tk, DETAIL_ACTIONS, async (a) => {
            const updated = await runAction(tk, a);
            if (updated) {
              // A move may queue messages (a "resolved" notice): the paging list follows.
              notes = await loadNotes();
              tk = updated;
              render();
            } else {
              await load();
            }
          }),
        ),
        el(
          "div",
          { class: "columns" },
          el(
            "section",
            { class: "timeline" },
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
          ),
          notes && pagingSection(notes),
        ),
      );
    }

    async function load() {
      try {
        [me, tk, notes] = await Promise.all([
          call("/me"),
          call("/tickets/" + CFG.ticketId),
          loadNotes(),
        ]);
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

  // -- alerts and silences ------------------------------------------------------------------
  const ALERT_STATES = ["unresolved", "FIRING", "PENDING", "RECOVERING", "NODATA"];
  const SHELVE_HOURS = [1, 4, 8, 24];

  // A length the API's duration fields accept: 4h, 90m, 45s.
  function durationText(seconds) {
    if (seconds % 3600 === 0) return seconds / 3600 + "h";
    if (seconds % 60 === 0) return seconds / 60 + "m";
    return seconds + "s";
  }

  function fmtLength(seconds) {
    if (seconds % 3600 === 0) return t("u_h", { n: seconds / 3600 });
    if (seconds % 60 === 0) return t("u_min", { n: seconds / 60 });
    return t("u_s", { n: seconds });
  }

  // The shelve lengths offered: the usual ones up to the server's tickets.max_shelve, and that
  // maximum itself when it falls between them.
  function shelveChoices() {
    const max = CFG.maxShelveS;
    const out = SHELVE_HOURS.map((h) => h * 3600).filter((s) => s <= max);
    if (!out.includes(max) && max < SHELVE_HOURS[SHELVE_HOURS.length - 1] * 3600) out.push(max);
    return out.map((s) => [durationText(s), fmtLength(s)]);
  }

  // Refills a select with [value, text] options, keeping the chosen value when still offered.
  // A select filled for the first time starts on its first option.
  function fillSelect(select, options) {
    const keep = select.options.length ? select.value : null;
    select.replaceChildren(...options.map(([value, text]) => el("option", { value, text })));
    if (options.some(([value]) => value === keep)) select.value = keep;
  }

  function failure(e) {
    return e.status === 403 ? t("forbidden", { m: e.message }) : t("failed", { m: e.message });
  }

  async function alertsPage() {
    const list = document.getElementById("alerts");
    const stateSel = document.getElementById("filter-state");
    const buildingSel = document.getElementById("filter-building");
    let me = session.me;
    let page = null;
    let buildings = [];

    function renderFilters() {
      fillSelect(stateSel, ALERT_STATES.map((s) => [s, s === "unresolved" ? t("all") : label("astate_", s)]));
      fillSelect(buildingSel, [["", t("all")], ...buildings.map((b) => [b, b])]);
    }

    async function act(a, action) {
      show("message", "");
      let body = {};
      if (action === "shelve") {
        body = await askFields(t("aact_shelve"), `#${a.id} ${a.device}`, [
          { name: "reason", label: "field_reason", type: "textarea", required: true },
          { name: "duration", label: "field_shelve_for", type: "select", required: true, options: shelveChoices() },
        ]);
        if (body === null) return;
      }
      try {
        await call(`/alerts/${a.id}/${action}`, { method: "POST", body });
        toast(t("adone_" + action, { n: a.id }));
      } catch (e) {
        if (e.status !== 401) show("message", failure(e));
      }
      await load(); // also after a refusal: the alert may have moved under us
    }

    function card(a) {
      const value = a.last_value === null ? "" : " = " + fmtNumber(a.last_value);
      const notes = [];
      if (a.acknowledged) notes.push(t("acked_by", { who: a.acked_by || "" }));
      if (a.shelved && a.shelve) {
        notes.push(t("shelved_until", { t: fmtTime(a.shelve.until), who: a.shelve.by, r: a.shelve.reason }));
      }
      if (a.silenced_by !== null) notes.push(t("silenced_by", { n: a.silenced_by }));
      const actions = [];
      if (atLeast(me, "technician")) {
        if (!a.acknowledged) actions.push("acknowledge");
        actions.push(a.shelved ? "unshelve" : "shelve");
      }
      const buttons = actions.map((action) => el("button", {
        type: "button",
        class: action === "acknowledge" ? "primary" : null,
        dataset: { action },
        text: t("aact_" + action),
        onclick: async (ev) => {
          const group = ev.currentTarget.parentElement;
          for (const b of group.querySelectorAll("button")) b.disabled = true;
          try {
            await act(a, action);
          } finally {
            for (const b of group.querySelectorAll("button")) b.disabled = false;
          }
        },
      }));
      return listCard(
        "alert",
        { alertId: a.id, state: a.state },
        [
          el("span", { class: "badge sev-" + a.severity, text: label("sev_", a.severity) }),
          el("span", { class: "badge astate", text: label("astate_", a.state) }),
          el("span", { class: "device", text: a.device }),
        ],
        a.rule_id + " · " + a.metric + value,
        [a.building, t("since", { t: fmtTime(a.fired_at || a.started_at) })].join(" · "),
        notes.length ? el("p", { class: "meta flags", text: notes.join(" · ") }) : null,
        buttons.length || a.ticket_id !== null
          ? el(
            "div",
            { class: "actions" },
            buttons,
            a.ticket_id !== null && el("a", {
              class: "button-link", href: CFG.console + "/tickets/" + a.ticket_id, text: t("open_ticket"),
            }),
          )
          : null,
      );
    }

    function render() {
      renderWho(me);
      document.getElementById("read-only").hidden = !me || atLeast(me, "technician");
      renderFilters();
      fillCards(list, page, "no_alerts", card);
    }

    async function load() {
      const q = new URLSearchParams({ state: stateSel.value || "unresolved", limit: "200" });
      if (buildingSel.value) q.set("building", buildingSel.value);
      const got = await meAndPage("/alerts?" + q);
      if (got) ({ me, page } = got);
      render();
    }

    rerender = render;
    renderFilters();
    reloadOn(load, stateSel, buildingSel);
    // The buildings to filter by: where the devices are.
    call("/devices").then((d) => {
      buildings = [...new Set(d.items.map((x) => x.location.building))].sort();
      renderFilters();
    }, () => {});
    await load();
  }

  const SILENCE_FILTERS = ["current", "ACTIVE", "PENDING", "EXPIRED", "CANCELLED", ""];

  async function silencesPage() {
    const list = document.getElementById("silences");
    const stateSel = document.getElementById("filter-state");
    const details = document.getElementById("new-silence");
    const form = document.getElementById("silence-form");
    let me = session.me;
    let page = null;
    let devices = [];
    let faultClasses = [];
    const typed = {}; // what was entered in the form, kept across a language switch

    function renderFilters() {
      fillSelect(stateSel, SILENCE_FILTERS.map((s) => [
        s, s === "current" ? t("current") : (s ? label("sstate_", s) : t("all")),
      ]));
    }

    function matcherText(key, value) {
      if (key === "tags") return Object.entries(value).map(([k, v]) => k + "=" + v).join(", ");
      return value.map((v) => (key === "kinds" ? label("kind_", v) : v)).join(", ");
    }

    async function cancel(x) {
      show("message", "");
      const ok = await askFields(t("sact_cancel"), "#" + x.id, []);
      if (ok === null) return;
      try {
        await call("/silences/" + x.id, { method: "DELETE" });
        toast(t("sdone_cancel", { n: x.id }));
      } catch (e) {
        if (e.status !== 401) show("message", failure(e));
      }
      await load();
    }

    function card(x) {
      const live = x.state === "ACTIVE" || x.state === "PENDING";
      const matchers = Object.entries(x.matchers).filter(
        ([, v]) => (Array.isArray(v) ? v.length : Object.keys(v || {}).length) > 0,
      );
      const by = [t("s_by", { who: x.created_by })];
      if (x.cancelled_at) by.push(t("s_cancelled_by", { who: x.cancelled_by || "", t: fmtTime(x.cancelled_at) }));
      return listCard(
        "silence",
        { silenceId: x.id, state: x.state },
        [
          el("span", { class: "badge sstate-" + x.state, text: label("sstate_", x.state) }),
          el("span", { class: "badge purpose", text: label("purpose_", x.purpose) }),
          el("span", { class: "number", text: "#" + x.id }),
        ],
        x.comment,
        t("s_window", { a: fmtTime(x.starts_at), b: fmtTime(x.ends_at) }),
        el(
          "dl",
          { class: "fields" },
          matchers.map(([k, v]) => [el("dt", { text: label("m_", k) }), el("dd", { text: matcherText(k, v) })]),
        ),
        el("p", { class: "meta", text: by.join(" · ") }),
        live && atLeast(me, "manager")
          ? el("div", { class: "actions" }, el("button", {
            type: "button", dataset: { action: "cancel" }, text: t("sact_cancel"), onclick: () => cancel(x),
          }))
          : null,
      );
    }

    const FIELDS = () => {
      const kinds = [...new Set(devices.map((d) => d.kind))].sort();
      const buildings = [...new Set(devices.map((d) => d.location.building))].sort();
      const any = ["", t("any")];
      return [
        { name: "purpose", label: "field_purpose", type: "select", options: ["silence", "maintenance"].map((p) => [p, label("purpose_", p)]) },
        { name: "devices", label: "f_device", type: "select", options: [any, ...devices.map((d) => [d.id, d.id + " · " + d.name])] },
        { name: "buildings", label: "f_building", type: "select", options: [any, ...buildings.map((b) => [b, b])] },
        { name: "kinds", label: "m_kinds", type: "select", options: [any, ...kinds.map((k) => [k, label("kind_", k)])] },
        { name: "fault_classes", label: "f_fault_class", type: "text", list: "fault-classes" },
        { name: "starts_at", label: "field_starts_at", type: "datetime-local" },
        { name: "ends_at", label: "field_ends_at", type: "datetime-local", required: true },
        { name: "comment", label: "field_comment", type: "textarea", required: true },
      ];
    };

    function renderForm() {
      const error = el("p", { class: "message error", id: "silence-error", role: "alert", hidden: true });
      form.replaceChildren(
        ...formControls(FIELDS(), "silence", typed),
        el("datalist", { id: "fault-classes" }, faultClasses.map((c) => el("option", { value: c }))),
        error,
        el("button", { type: "submit", class: "primary", text: t("create") }),
      );
    }

    async function create(ev) {
      ev.preventDefault();
      const v = Object.fromEntries(new FormData(form).entries());
      const fail = (text) => show("silence-error", text);
      const matchers = {};
      for (const key of ["devices", "buildings", "kinds", "fault_classes"]) {
        const value = String(v[key] || "").trim();
        if (value) matchers[key] = [value];
      }
      if (!Object.keys(matchers).length) return fail(t("need_matcher"));
      if (!v.ends_at || !String(v.comment).trim()) return fail(t("field_required"));
      const body = { purpose: v.purpose, matchers, ends_at: v.ends_at, comment: String(v.comment).trim() };
      if (v.starts_at) body.starts_at = v.starts_at;
      await submitForm(form, fail, async () => {
        const x = await call("/silences", { method: "POST", body });
        toast(t("sdone_create", { n: x.id }));
        for (const k of Object.keys(typed)) delete typed[k];
        details.open = false;
        renderForm();
        await load();
      });
    }

    function render() {
      renderWho(me);
      const manager = atLeast(me, "manager");
      document.getElementById("read-only").hidden = !me || manager;
      details.hidden = !manager;
      renderFilters();
      fillCards(list, page, "no_silences", card);
    }

    async function load() {
      const q = new URLSearchParams({ limit: "200" });
      const state = stateSel.value === "current" ? "ACTIVE,PENDING" : stateSel.value;
      if (state) q.set("state", state);
      const got = await meAndPage("/silences?" + q);
      if (got) ({ me, page } = got);
      render();
    }

    rerender = () => {
      render();
      renderForm();
    };
    renderFilters();
    renderForm();
    form.addEventListener("submit", create);
    reloadOn(load, stateSel);
    formChoices().then((c) => {
      ({ devices, faultClasses } = c);
      renderForm();
    });
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
    reloadOn(load);
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
    alerts: alertsPage,
    silences: silencesPage,
    devices: devicesPage,
    reports: reportsPage,
  };
  if (CFG.page !== "login" && !session.token) {
    toLogin(null);
    return;
  }
  Promise.resolve(pages[CFG.page]()).catch((e) => show("message", e.message));
})();
