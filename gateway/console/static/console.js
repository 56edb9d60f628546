// The operators' console, part 2 of 2 (docs/console.md): sign-in, the pages and routing, built
// on console-core.js. The same security rules hold: API data only as text nodes; the
// operator key in sessionStorage only.
"use strict";

(() => {
  const {
    KEY_STORE, ADMIN_PREFIX, $, enc, tenantPath, onSignOut,
    h, text, table, autoTable, pairs, pre, section, field, submitButton,
    notify, ApiError, report, fill, act, operatorKey, api,
  } = GatewayConsole;

  // ----- sign-in and sign-out -----

  function showSignIn() {
    $("#top").hidden = true;
    $("#app").replaceChildren();
    $("#sign-in").hidden = false;
    $("#admin-key").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORE);
    $("#messages").replaceChildren();
    showSignIn();
    if (message) notify(message, "error");
  }
  onSignOut(signOut); // a refused operator key (console-core.js's api) signs out here

  async function signIn(event) {
    event.preventDefault();
    const input = $("#admin-key");
    const key = input.value.trim();
    input.value = "";
    $("#messages").replaceChildren();
    if (!key.startsWith(ADMIN_PREFIX)) {
      notify("An operator key starts with " + ADMIN_PREFIX + " (tenant keys do not open the admin API).", "error");
      return;
    }
    try {
      await api("GET", "/admin/tenants", { key }); // checks the key before keeping it
    } catch (error) {
      notify("Sign-in failed: " + (error instanceof ApiError ? error.describe() : text(error)), "error");
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    if (location.hash.startsWith("#/")) route();
    else location.hash = "#/tenants";
  }

  // ----- pages -----

  function pageTenants(main) {
    const list = h("div", { id: "tenant-list" });
    const name = h("input", { id: "tenant-name", required: true, maxLength: 200, autocomplete: "off" });
    const refresh = () =>
      fill(list, async () => {
        const { data } = await api("GET", "/admin/tenants");
        if (!data.length) return h("p", { class: "muted" }, "No tenants yet.");
        return table(
          [
            ["Name", (t) => h("a", { href: "#/tenants/" + enc(t.name) }, t.name)],
            ["Active", (t) => (t.active ? "yes" : "no")],
            ["Created", (t) => t.created_at],
            ["Id", (t) => t.id],
          ],
          data,
          { id: "tenants" },
        );
      });
    const create = act(async () => {
      const tenant = await api("POST", "/admin/tenants", { json: { name: name.value } });
      name.value = "";
      notify("Tenant " + tenant.name + " created.", "ok");
      await refresh();
    });
    main.append(
      h("h1", {}, "Tenants"),
      h("form", { id: "create-tenant", class: "inline", method: "post", onsubmit: create },
        field("New tenant", name), submitButton("Create tenant")),
      list,
    );
    refresh();
  }

  function pageTenant(main, name) {
    main.append(
      h("p", {}, h("a", { href: "#/tenants" }, "← Tenants")),
      h("h1", { id: "tenant-title" }, "Tenant ", h("span", { class: "name" }, name)),
      keysCard(name),
      usageCard(name),
      budgetCard(name),
      limitsCard(name),
      policyCard(name),
      profileCard(name),
    );
  }

  function keysCard(name) {
    const list = h("div", { id: "key-list" });
    const settings = h("div", { id: "key-settings", class: "card", hidden: true });
    const secret = h("div", { id: "new-key", class: "secret-box", hidden: true });
    const label = h("input", { id: "key-name", maxLength: 200, autocomplete: "off" });
    const days = h("input", { id: "key-days", type: "number", min: 1, max: 3650 });
    const refresh = () =>
      fill(list, async () => {
        const { data } = await api("GET", tenantPath(name) + "/keys");
        if (!data.length) return h("p", { class: "muted" }, "No keys.");
        return table(
          [
            ["Prefix", (k) => k.prefix],
            ["Name", (k) => k.name],
            ["Created", (k) => k.created_at],
            ["Expires", (k) => k.expires_at || "never"],
            ["Last used", (k) => k.last_used_at || "never"],
            ["Revoked", (k) => k.revoked_at || revokeButton(k)],
            ["Limits and budget", (k) => h("button", { type: "button", class: "key-settings", onclick: () => showKeySettings(settings, k) },
              k.revoked_at ? "View" : "Edit")],
          ],
          data,
          { id: "keys" },
        );
      });
    // Two clicks revoke a key: the first arms the button, the second revokes.
    const revokeButton = (key) => {
      const button = h("button", { type: "button", class: "danger" }, "Revoke");
      button.addEventListener("click", act(async () => {
        if (button.dataset.armed !== "yes") {
          button.dataset.armed = "yes";
          button.textContent = "Confirm revoke";
          return;
        }
        await api("POST", "/admin/keys/" + enc(key.id) + "/revoke");
        notify("Key " + key.prefix + " revoked.", "ok");
        await refresh();
      }));
      return button;
    };
    const create = act(async () => {
      const body = { name: label.value };
      if (days.value) body.expires_in_days = Number(days.value);
      const issued = await api("POST", tenantPath(name) + "/keys", { json: body });
      label.value = "";
      days.value = "";
      const hide = () => {
        secret.replaceChildren();
        secret.hidden = true;
      };
      const copy = act(async () => {
        await navigator.clipboard.writeText(issued.key);
        notify("Copied.", "ok");
      });
      secret.replaceChildren(
        h("p", {}, "New key " + issued.id + " for " + issued.tenant + ". Copy it now: this is the only time it is shown."),
        h("code", { id: "new-key-secret", class: "secret" }, issued.key),
        h("div", { class: "actions" },
          h("button", { type: "button", onclick: copy }, "Copy"),
          h("button", { type: "button", id: "hide-secret", onclick: hide }, "Done, hide it")),
      );
      secret.hidden = false;
      await refresh();
    });
    refresh();
    return section("API keys",
      h("form", { id: "create-key", class: "inline", method: "post", onsubmit: create },
        field("Label", label), field("Expires in days (empty: never)", days), submitButton("Create key")),
      secret, list, settings);
  }

  function usageCard(name) {
    const today = new Date().toISOString().slice(0, 10);
    const start = h("input", { id: "usage-start", type: "date", value: today.slice(0, 8) + "01" });
    const end = h("input", { id: "usage-end", type: "date", value: today });
    const month = h("input", { id: "invoice-month", type: "month", value: today.slice(0, 7) });
    const usage = h("div", { id: "usage" });
    const savings = h("div", { id: "savings" });
    const invoice = h("div", { id: "invoice" });
    const load = () => {
      const period = { start: start.value, end: end.value };
      fill(usage, async () => renderUsage(await api("GET", tenantPath(name) + "/usage", { query: { ...period, format: "json" } })));
      fill(savings, async () => renderSavings(await api("GET", tenantPath(name) + "/savings", { query: period })));
    };
    const rollup = act(async () => {
      const done = await api("POST", "/admin/jobs/billing.hourly_rollup");
      notify("Rollup ran: " + text(done.result), "ok");
      load();
    });
    const showInvoice = act(async () => {
      await fill(invoice, async () => renderInvoice(await api("GET", tenantPath(name) + "/invoices/" + enc(month.value))));
    });
    load();
    return section("Usage and cost",
      h("form", { id: "usage-form", class: "inline", method: "post", onsubmit: act(async () => load()) },
        field("From", start), field("To", end), submitButton("Show usage"),
        h("button", { type: "button", onclick: rollup }, "Refresh rollup now")),
      h("p", { class: "muted" }, "Figures come from the hourly rollup, which the billing jobs refresh every 5 minutes."),
      usage, h("h3", {}, "Savings against comparator list prices"), savings,
      h("h3", {}, "Invoice"),
      h("form", { id: "invoice-form", class: "inline", method: "post", onsubmit: showInvoice },
        field("Month", month), submitButton("Show invoice")),
      invoice);
  }

  function renderUsage(report) {
    const items = (day) => day.line_items.map((li) => li.token_class + ": " + li.tokens + " tokens, $" + li.cost_usd).join("; ");
    return [
      h("p", {}, "From " + report.start + " up to (not including) " + report.end + ": total ",
        h("strong", { id: "usage-total" }, "$" + report.total_cost_usd)),
      report.data.length
        ? table(
          [["Date", (d) => d.date], ["Variant", (d) => d.variant], ["Mode", (d) => d.mode], ["Requests", (d) => d.requests],
            ["Reasoning tokens", (d) => d.reasoning_tokens], ["Line items", items], ["Cost (USD)", (d) => d.cost_usd]],
          report.data, { id: "usage-table" })
        : h("p", { class: "muted" }, "No usage in this period."),
    ];
  }

  function renderSavings(report) {
    return [
      h("p", {}, "Actual cost $" + report.actual_cost_usd + " for " + report.input_tokens + " input and " + report.output_tokens + " output tokens."),
      table([["Comparator", (c) => c.name], ["Would cost (USD)", (c) => c.cost_usd], ["Saved (USD)", (c) => c.savings_usd], ["Saved %", (c) => c.savings_pct]],
        report.comparators),
    ];
  }

  function renderInvoice(doc) {
    const { lines, ...summary } = doc;
    return [pairs(summary), autoTable(lines)];
  }

  // A budget (the tenant's or one key's): the stored budget with this period's figures, and a
  // form that starts from it. `opts`: none (text when there is none), extra(data) (more
  // elements), readOnly (no form), removable (a button that deletes it).
  function budgetEditor(prefix, path, who, opts) {
    const limit = h("input", { id: prefix + "-limit", required: true, pattern: "\\d+(\\.\\d+)?", inputMode: "decimal", placeholder: "100" });
    const period = h("select", { id: prefix + "-period" }, ["month", "day", "none"].map((p) => h("option", { value: p }, p)));
    const mode = h("select", { id: prefix + "-mode" }, h("option", { value: "hard" }, "hard: reject what it cannot cover"), h("option", { value: "soft" }, "soft: alert only"));
    const thresholds = h("input", { id: prefix + "-alerts", value: "50, 80, 100" });
    const current = h("div", { id: prefix + "-current" });
    const usd = (amount) => "$" + text(amount);
    const render = (data) => {
      const own = data.budget;
      if (own) { // the form starts from the stored budget
        limit.value = text(own.limit_usd);
        period.value = text(own.period);
        mode.value = text(own.mode);
        thresholds.value = own.alert_thresholds.join(", ");
      }
      return [
        own
          ? pairs({ limit: usd(own.limit_usd) + " per " + text(own.period), mode: own.mode, "alerts at % of limit": own.alert_thresholds.join(", "),
            "current period": own.current_period, spent: usd(own.spent_usd), "in flight (reserved)": usd(own.reserved_usd),
            remaining: usd(own.remaining_usd) }, { id: prefix + "-summary" })
          : h("p", { id: prefix + "-summary" }, opts.none),
        h("p", { class: "muted" }, "As of " + text(data.as_of) + ". Spent is settled cost in the current period; in flight is the worst case held by requests still running."),
        ...(opts.extra ? opts.extra(data) : []),
      ];
    };
    const load = () => fill(current, async () => render(await api("GET", path)));
    const save = act(async () => {
      const alerts = thresholds.value.split(/[\s,]+/).filter(Boolean).map(Number);
      if (alerts.some((n) => !Number.isInteger(n))) throw new Error("alert thresholds are whole percentages, e.g. 50, 80, 100");
      const body = { limit_usd: limit.value.trim(), period: period.value, mode: mode.value, alert_thresholds: alerts };
      const stored = await api("PUT", path, { json: body });
      notify("Budget of " + who + " set to $" + stored.limit_usd + " per " + stored.period + " (" + stored.mode + ").", "ok");
      await load();
    });
    const remove = act(async () => {
      const done = await api("DELETE", path);
      notify(done.removed ? "Budget of " + who + " removed." : who + " had no budget of its own.", "ok");
      await load();
    });
    load();
    return [current, opts.readOnly ? null : h("form", { id: prefix + "-form", class: "inline", method: "post", onsubmit: save },
      field("Limit (USD)", limit), field("Period", period), field("Mode", mode), field("Alerts at % of limit", thresholds),
      submitButton("Set budget"),
      opts.removable ? h("button", { type: "button", id: prefix + "-remove", class: "danger", onclick: remove }, "Remove budget") : null)];
  }

  function budgetCard(name) {
    const keyBudgets = (data) => (data.key_budgets.length
      ? [h("h3", {}, "Key budgets"), table([["Key", (b) => b.key_prefix || b.scope_id], ["Limit (USD)", (b) => b.limit_usd], ["Period", (b) => b.period],
        ["Mode", (b) => b.mode], ["Current period", (b) => b.current_period], ["Spent (USD)", (b) => b.spent_usd],
        ["In flight (USD)", (b) => b.reserved_usd], ["Remaining (USD)", (b) => b.remaining_usd]], data.key_budgets, { id: "key-budgets" })]
      : []);
    return section("Budget", budgetEditor("budget", tenantPath(name) + "/budget", name,
      { none: "No budget: the tenant's requests are not limited by cost.", extra: keyBudgets, removable: true }));
  }

  // Rate limits (the tenant's or one key's): requests and tokens per minute, empty = none.
  function limitsEditor(prefix, path, who, readOnly) {
    const rpm = h("input", { id: prefix + "-rpm", type: "number", min: 0, step: 1, placeholder: "no limit" });
    const tpm = h("input", { id: prefix + "-tpm", type: "number", min: 0, step: 1, placeholder: "no limit" });
    const current = h("div", { id: prefix + "-current" });
    const shown = (value) => (value === null || value === undefined ? "no limit" : text(value));
    const render = (limits) => {
      rpm.value = limits.rpm === null ? "" : text(limits.rpm);
      tpm.value = limits.tpm === null ? "" : text(limits.tpm);
      return pairs({ "requests per minute": shown(limits.rpm), "tokens per minute": shown(limits.tpm) }, { id: prefix + "-summary" });
    };
    // Empty means no limit (null); anything else goes to the API as a number, which checks it.
    const perMinute = (input, label) => {
      if (input.validity.badInput) throw new Error(label + " must be a whole number (empty: no limit)");
      const raw = input.value.trim();
      return raw === "" ? null : Number(raw);
    };
    const save = act(async () => {
      const body = { rpm: perMinute(rpm, "Requests per minute"), tpm: perMinute(tpm, "Tokens per minute") };
      const stored = await api("PUT", path, { json: body });
      current.replaceChildren(render(stored));
      notify("Rate limits of " + who + ": " + shown(stored.rpm) + " requests and " + shown(stored.tpm) + " tokens per minute.", "ok");
    });
    fill(current, async () => render(await api("GET", path)));
    return [current, readOnly ? null : h("form", { id: prefix + "-form", class: "inline", method: "post", onsubmit: save },
      field("Requests per minute (empty: no limit)", rpm), field("Tokens per minute (empty: no limit)", tpm),
      submitButton("Set rate limits"))];
  }

  function limitsCard(name) {
    return section("Rate limits",
      h("p", { class: "muted" }, "Across all the tenant's keys (a key's own limits, set from the keys table, apply as well). A change applies to the next request."),
      limitsEditor("limits", tenantPath(name) + "/limits", name, false));
  }

  // One key's own limits and budget, on top of the tenant's; a revoked key's are read only.
  function showKeySettings(panel, key) {
    const path = "/admin/keys/" + enc(key.id);
    const who = "key " + key.prefix;
    const readOnly = Boolean(key.revoked_at);
    panel.replaceChildren(h("div", {},
      h("h3", {}, "Key " + key.prefix + "… (" + key.id + ")"),
      h("p", { class: "muted" }, readOnly
        ? "Revoked: its settings are shown, not changed."
        : "The key's own limits and budget; the tenant's apply as well. A change applies to the next request."),
      h("h4", {}, "Rate limits"), limitsEditor("key-limits", path + "/limits", who, readOnly),
      h("h4", {}, "Budget"), budgetEditor("key-budget", path + "/budget", who,
        { none: "No budget of its own.", readOnly, removable: true }),
      h("button", { type: "button", id: "key-settings-close", onclick: () => { panel.hidden = true; panel.replaceChildren(); } }, "Close")));
    panel.hidden = false;
  }

  // A versioned document (policy or compliance profile): view, edit as JSON text, activate.
  function documentEditor(id, initial, onSave, ...extra) {
    const editor = h("textarea", { id: id + "-editor", rows: 14, spellcheck: false, value: initial });
    return [
      field("Document (JSON; YAML is accepted too)", editor),
      ...extra,
      h("button", { type: "button", id: id + "-format", onclick: act(async () => {
        editor.value = JSON.stringify(JSON.parse(editor.value), null, 2);
      }) }, "Check and format JSON"),
      h("button", { type: "button", id: id + "-save", onclick: act(async () => onSave(editor.value)) }, "Activate as new version"),
    ];
  }

  function policyCard(name) {
    const box = h("div", { id: "policy" });
    const comment = h("input", { id: "policy-comment", maxLength: 500 });
    const render = async () => {
      let active = null;
      try {
        active = await api("GET", tenantPath(name) + "/policy");
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 404 && error.code === "not_found")) throw error;
      }
      const { data } = await api("GET", tenantPath(name) + "/policy/versions");
      const rollbackTo = (v) => h("button", { type: "button", onclick: act(async () => {
        const now = await api("POST", tenantPath(name) + "/policy/rollback", { query: { to: v.version } });
        notify("Policy version " + now.version + " is active.", "ok");
        await fill(box, render);
      }) }, "Activate");
      const activate = async (source) => {
        const stored = await api("PUT", tenantPath(name) + "/policy", { text: source, query: { comment: comment.value } });
        notify("Policy version " + stored.version + " is active.", "ok");
        await fill(box, render);
      };
      return [
        active
          ? pairs({ "active version": active.version, digest: active.digest, comment: active.comment, by: active.created_by, at: active.created_at }, { id: "policy-active" })
          : h("p", { id: "policy-active" }, "No policy of its own: the default policy applies (docs/policy.md)."),
        ...documentEditor("policy", active ? JSON.stringify(active.document, null, 2) : "{}", activate,
          field("Comment (optional)", comment)),
        h("h3", {}, "Versions"),
        data.length
          ? table([["Version", (v) => v.version], ["Active", (v) => (v.active ? "yes" : "")], ["Comment", (v) => v.comment], ["By", (v) => v.created_by],
            ["At", (v) => v.created_at], ["Digest", (v) => v.digest], ["", (v) => (v.active ? "" : rollbackTo(v))]], data, { id: "policy-versions" })
          : h("p", { class: "muted" }, "No versions."),
      ];
    };
    fill(box, render);
    return section("Policy", box);
  }

  function profileCard(name) {
    const box = h("div", { id: "profile" });
    const render = async () => {
      const profile = await api("GET", tenantPath(name) + "/compliance/profile");
      const save = async (source) => {
        const stored = await api("PUT", tenantPath(name) + "/compliance/profile", { text: source });
        notify("Compliance profile version " + stored.version + " is active.", "ok");
        await fill(box, render);
      };
      return [
        pairs({ "active version": profile.version, digest: profile.digest }, { id: "profile-active" }),
        ...documentEditor("profile", profile.source || JSON.stringify(profile.document, null, 2), save),
        h("h3", {}, "Versions"),
        Array.isArray(profile.versions) ? autoTable(profile.versions) : pre(profile.versions),
      ];
    };
    fill(box, render);
    return section("Compliance profile", box);
  }

  function pagePrices(main) {
    const box = h("div", { id: "prices" });
    fill(box, async () => {
      const catalog = await api("GET", "/admin/prices");
      const prices = (v) => h("div", {}, Object.entries(v.prices).map(([variant, p]) =>
        h("div", {}, variant + ": " + p.cache_hit + " / " + p.cache_miss + " / " + p.output)));
      const days = ["", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
      const timeOfDay = (v) => {
        const t = v.time_of_day;
        if (!t) return "flat";
        const windows = t.peak.map((w) => w.weekdays.map((d) => days[d] || d).join(",") + " " + w.start.slice(0, 5) + "-" + w.end.slice(0, 5));
        return h("div", {}, windows.map((w) => h("div", {}, "peak " + w + " UTC")), h("div", {}, "off-peak: x" + t.off_peak_multiplier));
      };
      return [
        h("p", { class: "muted" }, "USD per 1M tokens: cache hit / cache miss / output. Change the catalog with `gateway prices import FILE`."),
        section("Versions", table([["Id", (v) => v.id], ["Effective from", (v) => v.effective_from], ["Prices", prices],
          ["Time of day", timeOfDay], ["Note", (v) => v.note]], catalog.versions, { id: "price-versions" })),
        section("Promotions", autoTable(catalog.promotions)),
        section("Comparators", autoTable(catalog.comparators)),
      ];
    });
    main.append(h("h1", {}, "Prices"), box);
  }

  function pageCompliance(main) {
    const list = (path) => async () => autoTable((await api("GET", path)).data);
    const boxes = ["artifacts", "pools"].map((kind) => {
      const box = h("div", { id: "compliance-" + kind });
      fill(box, list("/admin/compliance/" + kind));
      return section(kind === "pools" ? "Device pools" : "Artifacts", box);
    });
    const deployments = h("div", { id: "compliance-deployments" });
    fill(deployments, async () => {
      const { data } = await api("GET", "/admin/compliance/deployments");
      if (!data.length) return h("p", { class: "muted" }, "None.");
      return table([["Name", (d) => d.name], ["Model", (d) => d.model_id], ["Variant", (d) => d.variant],
        ["Pool", (d) => d.pool.name + " (" + d.pool.device_kind + ", " + d.pool.vendor + ", " + d.pool.region + ")"],
        ["Artifacts", (d) => d.artifacts.map((a) => a.name + " [" + a.license + "]").join(", ")]], data);
    });
    const verify = h("div", { id: "audit-verify" });
    const runVerify = act(async () => fill(verify, async () => {
      const result = await api("GET", "/admin/audit/verify");
      const { problems, ...summary } = result;
      return [h("p", { class: result.ok ? "ok" : "error" }, result.ok ? "The audit chain verifies." : "The audit chain has problems."),
        pairs(summary), problems.length ? autoTable(problems) : ""];
    }));
    main.append(h("h1", {}, "Compliance registry"), ...boxes, section("Deployments", deployments),
      section("Audit log", h("button", { type: "button", id: "run-verify", onclick: runVerify }, "Verify the audit chain"), verify));
  }

  function pageModels(main) {
    const served = h("div", { id: "models-deployments" });
    fill(served, async () => {
      const { data } = await api("GET", "/admin/compliance/deployments");
      if (!data.length) return h("p", { class: "muted" }, "No deployments registered.");
      return table([["Model", (d) => d.model_id], ["Variant", (d) => d.variant], ["Deployment", (d) => d.name], ["Pool", (d) => d.pool.name],
        ["Weights", (d) => d.artifacts.filter((a) => a.kind === "model_weights").map((a) => a.name + " (" + a.license + ", sha256 " + a.sha256 + ")").join(", ")]], data);
    });
    // /v1/models is the tenant API: it takes a tenant key, used for this one call and not kept.
    const tenantKey = h("input", { id: "tenant-key", type: "password", autocomplete: "off", spellcheck: false });
    const listed = h("div", { id: "models-list" });
    const check = act(async () => {
      const key = tenantKey.value.trim();
      tenantKey.value = "";
      await fill(listed, async () => autoTable((await api("GET", "/v1/models", { key })).data));
    });
    main.append(h("h1", {}, "Models"), section("Deployments by model", served),
      section("What a tenant sees (GET /v1/models)",
        h("p", { class: "muted" }, "The model list is part of the tenant API: paste a tenant key (sk-gw-...). It is used for this one request and not stored."),
        h("form", { id: "models-form", class: "inline", method: "post", onsubmit: check }, field("Tenant key", tenantKey), submitButton("List models")),
        listed));
  }

  function pagePools(main) {
    const box = h("div", { id: "pools" });
    const load = () => fill(box, async () => {
      const { data } = await api("GET", "/admin/pools");
      if (!data.length) return h("p", { class: "muted" }, "No pools registered.");
      return data.map((pool) => {
        const toggle = (replica) => h("button", { type: "button", class: "replica-toggle", onclick: act(async () => {
          await api("PATCH", "/admin/pools/" + enc(pool.name) + "/replicas", { json: { url: replica.url, enabled: !replica.enabled } });
          notify((replica.enabled ? "Drained " : "Returned ") + replica.url + ".", "info");
          await load();
        }) }, replica.enabled ? "Drain" : "Return");
        const state = (r) => (r.state ? (r.state.healthy ? "healthy" : "unhealthy") + ", breaker " + r.state.breaker + ", " + r.state.in_flight + " in flight" : r.enabled ? "not served by this process" : "drained");
        return section(pool.name + " (" + pool.backend + ", " + pool.device_kind + ", " + pool.region + ")",
          h("p", { class: "muted" }, "Variants: " + (pool.variants.length ? pool.variants.join(", ") : "all") + (pool.sovereign ? "; sovereign" : "") + "; source: " + pool.source),
          pool.replicas.length ? table([["Replica", (r) => r.url], ["Capacity", (r) => r.capacity], ["State", state], ["", toggle]], pool.replicas, { class: "replicas" })
            : h("p", { class: "muted" }, "No replicas."));
      });
    });
    load();
    main.append(h("h1", {}, "Pools"), h("p", { class: "muted" }, "Replicas as this gateway process sees them (health checks, circuit breakers). Draining stops new requests; those in flight finish. Other gateway processes follow within 10 s."), box);
  }

  // ----- routing (the hash holds the page, never a secret) -----

  const ROUTES = [
    [/^#\/tenants$/, (main) => pageTenants(main)],
    [/^#\/tenants\/(.+)$/, (main, m) => pageTenant(main, decodeURIComponent(m[1]))],
    [/^#\/prices$/, (main) => pagePrices(main)],
    [/^#\/compliance$/, (main) => pageCompliance(main)],
    [/^#\/models$/, (main) => pageModels(main)],
    [/^#\/pools$/, (main) => pagePools(main)],
  ];

  function route() {
    if (!operatorKey()) {
      showSignIn();
      return;
    }
    $("#sign-in").hidden = true;
    $("#top").hidden = false;
    const main = $("#app");
    main.replaceChildren();
    const hash = location.hash || "#/tenants";
    for (const [pattern, page] of ROUTES) {
      const match = hash.match(pattern);
      if (!match) continue;
      try {
        page(main, match);
      } catch (error) {
        report(error);
      }
      for (const link of document.querySelectorAll("#top nav a")) {
        link.classList.toggle("current", hash.startsWith(link.getAttribute("href")));
      }
      return;
    }
    location.hash = "#/tenants";
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#sign-in-form").addEventListener("submit", signIn);
    $("#sign-out").addEventListener("click", () => {
      history.replaceState(null, "", location.pathname); // the next operator starts afresh
      signOut();
      notify("Signed out.", "info");
    });
    window.addEventListener("hashchange", () => {
      $("#messages").replaceChildren();
      route();
    });
    route();
  });
})();
