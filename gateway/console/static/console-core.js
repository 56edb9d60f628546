// The operators' console, part 1 of 2 (docs/console.md): DOM helpers, messages and the API
// client, shared with console.js through the frozen GatewayConsole object. Plain script, no
// build step, no dependencies. Security rules kept by every line here: API data reaches the
// page only as text nodes (textContent / createTextNode, never HTML parsing); the operator key
// lives in sessionStorage only and leaves the page only as a Bearer header to this origin.
"use strict";

const GatewayConsole = (() => {
  const KEY_STORE = "gateway.console.operatorKey";
  const ADMIN_PREFIX = "sk-gwa-";
  const $ = (selector) => document.querySelector(selector);
  const enc = encodeURIComponent;
  const tenantPath = (name) => "/admin/tenants/" + enc(name);
  // what a refused operator key does (console.js: back to the sign-in form)
  let signOut = (message) => {
    sessionStorage.removeItem(KEY_STORE);
    if (message) notify(message, "error");
  };
  const onSignOut = (handler) => {
    signOut = handler;
  };

  // ----- DOM: elements from properties and text children only -----

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else if (name === "class") el.className = value;
      else if (name === "for") el.htmlFor = value;
      else if (name === "href") {
        if (!String(value).startsWith("#/")) throw new Error("console links stay inside the console");
        el.setAttribute("href", value);
      } else if (name in el) el[name] = value;
      else el.setAttribute(name, String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : String(child)); // strings become text nodes
    }
    return el;
  }

  const text = (value) => {
    if (value === undefined || value === null) return "";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  };

  function table(columns, rows, props) {
    const head = h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)));
    const body = rows.map((row) =>
      h("tr", {}, columns.map(([, cell]) => {
        const value = cell(row);
        return h("td", {}, value instanceof Node ? value : text(value));
      })),
    );
    return h("table", props || {}, h("thead", {}, head), h("tbody", {}, body));
  }

  // A table of plain objects: one column per key seen.
  function autoTable(rows, props) {
    if (!rows.length) return h("p", { class: "muted" }, "None.");
    const keys = [...new Set(rows.flatMap((row) => Object.keys(row)))];
    return table(keys.map((key) => [key, (row) => row[key]]), rows, props);
  }

  function pairs(object, props) {
    const list = h("dl", props || {});
    for (const [key, value] of Object.entries(object)) {
      list.append(h("dt", {}, key), h("dd", {}, value === null || value === undefined ? "none" : text(value)));
    }
    return list;
  }

  const pre = (value, props) => h("pre", props || {}, JSON.stringify(value, null, 2));
  const section = (title, ...children) => h("section", { class: "card" }, h("h2", {}, title), children);
  const field = (label, input) => h("label", { class: "field" }, h("span", {}, label), input);
  const submitButton = (label) => h("button", { type: "submit" }, label);

  // ----- messages: every API error is shown, none is swallowed -----

  function notify(message, kind) {
    const level = kind || "info";
    const item = h("div", { class: "msg " + level, role: level === "error" ? "alert" : "status" }, h("span", {}, message));
    item.append(h("button", { type: "button", class: "close", title: "Dismiss", onclick: () => item.remove() }, "×"));
    $("#messages").append(item);
  }

  class ApiError extends Error {
    constructor(status, body, fallback) {
      const error = body && typeof body === "object" && body.error && typeof body.error === "object" ? body.error : {};
      super(text(error.message) || fallback || "HTTP " + status);
      this.status = status;
      this.type = text(error.type);
      this.code = text(error.code);
      this.param = text(error.param);
      this.signedOut = false;
    }

    describe() {
      const label = [this.status || "network", this.type, this.code].filter(Boolean).join(" ");
      return label + ": " + this.message + (this.param ? " (param: " + this.param + ")" : "");
    }
  }

  function report(error) {
    if (error instanceof ApiError) {
      if (!error.signedOut) notify(error.describe(), "error");
    } else {
      notify("Console error: " + (error && error.message ? error.message : text(error)), "error");
    }
  }

  // Replace `box` with what `work` builds; an error is shown in its place.
  async function fill(box, work) {
    box.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      box.replaceChildren(...[].concat(await work()));
    } catch (error) {
      if (error instanceof ApiError && error.signedOut) return;
      box.replaceChildren(h("p", { class: "error", role: "alert" }, error instanceof ApiError ? error.describe() : text(error && error.message)));
    }
  }

  // An event handler that runs `work`, shows any error, and keeps the form from submitting.
  function act(work) {
    return async (event) => {
      event.preventDefault();
      const control = event.submitter || event.currentTarget;
      if (control && "disabled" in control) control.disabled = true;
      try {
        await work(event);
      } catch (error) {
        report(error);
      } finally {
        if (control && "disabled" in control) control.disabled = false;
      }
    };
  }

  // ----- the API client -----

  const operatorKey = () => sessionStorage.getItem(KEY_STORE);

  async function api(method, path, options) {
    const opts = options || {};
    const ownKey = opts.key === undefined; // the operator key: a 401/403 signs out
    const token = ownKey ? operatorKey() : opts.key;
    if (!token) {
      signOut("Sign in with an operator key.");
      const error = new ApiError(401, null, "not signed in");
      error.signedOut = true;
      throw error;
    }
    let url = path;
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(opts.query || {})) {
      if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
    }
    if (query.toString()) url += "?" + query.toString();
    const headers = { authorization: "Bearer " + token, accept: "application/json" };
    let body;
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.text !== undefined) {
      headers["content-type"] = "text/plain; charset=utf-8";
      body = opts.text;
    }
    let response;
    try {
      response = await fetch(url, { method, headers, body, cache: "no-store", credentials: "omit", redirect: "error" });
    } catch (error) {
      throw new ApiError(0, null, "the gateway could not be reached (" + error.message + ")");
    }
    const raw = await response.text();
    let data = null;
    try {
      data = raw ? JSON.parse(raw) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data, raw.slice(0, 300) || response.statusText);
      if (ownKey && (response.status === 401 || response.status === 403)) {
        error.signedOut = true;
        signOut("The gateway refused the operator key (" + error.describe() + "). Sign in again.");
      }
      throw error;
    }
    if (data === null) throw new ApiError(response.status, null, "the gateway's answer was not JSON");
    return data;
  }

  return Object.freeze({
    KEY_STORE, ADMIN_PREFIX, $, enc, tenantPath, onSignOut,
    h, text, table, autoTable, pairs, pre, section, field, submitButton,
    notify, ApiError, report, fill, act, operatorKey, api,
  });
})();
