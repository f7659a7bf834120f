/* Rule builder for the segment change form.
 *
 * The rule's JSON textarea is the source of truth that the form saves. This script draws the
 * rule as nested groups and conditions, writes every change back to the textarea, asks the
 * server for a live count (debounced) and shows validation errors at the condition whose JSON
 * path they name. Plain DOM, no dependencies. */
(function () {
  "use strict";

  var NO_VALUE = ["is_set", "is_not_set", "is_true", "is_false"];
  var DAY_OPS = ["in_last_days", "in_next_days", "more_than_days_ago"];
  var PERCENT_OPS = ["top_percent", "bottom_percent"];
  var LIST_OPS = ["in", "not_in", "contains_any", "contains_all", "contains_none"];
  var EVENT_VALUE_OPS = ["count_gte", "count_lte", "count_eq", "sum_gte"];
  var EVENT_CHOICE = "__event__";
  var SEGMENT_CHOICE = "__segment__";

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "className") node.className = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  function option(value, label, selected) {
    var node = el("option", { value: value, text: label });
    if (selected) node.selected = true;
    return node;
  }

  function joinPath(path, key) { return path ? path + "." + key : key; }

  function Builder(root) {
    this.root = root;
    this.textarea = document.getElementById(root.dataset.textarea);
    this.catalog = JSON.parse(document.getElementById(root.dataset.textarea + "-catalog").textContent);
    this.words = this.catalog.operator_words;  // the server's wording table (segments/rules/wording.py)
    this.fields = {};
    var self = this;
    this.catalog.layers.forEach(function (group) {
      group.fields.forEach(function (field) { self.fields[field.path] = field; });
    });
    this.tree = root.querySelector("[data-rb-tree]");
    this.jsonError = root.querySelector("[data-rb-json-error]");
    this.count = root.querySelector("[data-rb-count]");
    this.errorList = root.querySelector("[data-rb-errors]");
    this.samples = root.querySelector("[data-rb-samples]");
    this.impact = root.querySelector("[data-rb-impact]");
    this.timer = null;
    this.requestNumber = 0;
    this.rule = this.parse(this.textarea.value);
    if (this.rule === undefined) {
      this.rule = { all: [] };
      root.querySelector("[data-rb-json-panel]").open = true;
      this.showJsonError("The JSON below does not parse; fix it there or start over with the builder.");
    }
    this.textarea.addEventListener("input", function () { self.fromTextarea(); });
    root.querySelector("[data-rb-explain-button]").addEventListener("click", function () { self.explain(); });
    root.querySelector("[data-rb-explain-contact]").addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); self.explain(); }
    });
    var parent = document.getElementById("id_parent");
    if (parent) parent.addEventListener("change", function () { self.schedulePreview(); });
    this.render();
    this.schedulePreview(0);
  }

  Builder.prototype.parse = function (text) {
    if (!text.trim()) return { all: [] };
    try { return JSON.parse(text); } catch (error) { return undefined; }
  };

  Builder.prototype.showJsonError = function (message) {
    this.jsonError.textContent = message || "";
    this.jsonError.hidden = !message;
  };

  Builder.prototype.fromTextarea = function () {
    var parsed = this.parse(this.textarea.value);
    if (parsed === undefined) {
      this.showJsonError("Not valid JSON yet; the builder shows the last valid rule.");
      return;
    }
    this.showJsonError("");
    this.rule = parsed;
    this.render();
    this.schedulePreview();
  };

  Builder.prototype.changed = function (options) {
    this.textarea.value = JSON.stringify(this.rule, null, 2);
    this.showJsonError("");
    if (options && options.rerender) this.render();
    this.schedulePreview();
  };

  // Drawing ----------------------------------------------------------------------------------

  Builder.prototype.render = function () {
    var active = document.activeElement;
    var focusedPath = active && active.dataset && this.tree.contains(active) ? [active.dataset.rbPath, active.dataset.rbRole] : null;
    this.tree.textContent = "";
    var self = this;
    this.tree.appendChild(this.renderNode(this.rule, "", function (replacement) {
      self.rule = replacement;
    }, true));
    if (!focusedPath || focusedPath[0] === undefined) return;
    // The same control if it is still drawn, else the first control of the node now at that
    // path (after "Negate" the node there is the NOT around it): the keyboard never drops out.
    var again = this.tree.querySelector('[data-rb-path="' + focusedPath[0] + '"][data-rb-role="' + focusedPath[1] + '"]') ||
      this.tree.querySelector('[data-rb-path="' + focusedPath[0] + '"]');
    if (again) again.focus();
  };

  Builder.prototype.renderNode = function (node, path, replace, isRoot) {
    if (node && typeof node === "object" && !Array.isArray(node)) {
      if (Array.isArray(node.all) || Array.isArray(node.any)) return this.renderGroup(node, path, replace, isRoot);
      if ("not" in node) return this.renderNot(node, path, replace, isRoot);
      if ("event" in node) return this.renderEvent(node, path, replace, isRoot);
      if ("in_segment" in node) return this.renderSegment(node, path, replace, isRoot);
      if ("field" in node || Object.keys(node).length === 0) return this.renderCondition(node, path, replace, isRoot);
    }
    var box = el("div", { className: "rb-node rb-unknown", "data-rb-node": path });
    box.appendChild(el("p", { text: "This part of the rule is not something the builder can draw; edit it as JSON: " + JSON.stringify(node) }));
    return box;
  };

  Builder.prototype.toolbar = function (path, replace, node, isRoot) {
    var self = this;
    var bar = el("span", { className: "rb-tools" });
    var negate = el("button", { type: "button", className: "rb-btn", text: "Negate", "data-rb-path": path, "data-rb-role": "negate",
      "aria-label": "Negate " + (path || "the whole rule") });
    negate.addEventListener("click", function () { replace({ not: node }); self.changed({ rerender: true }); });
    bar.appendChild(negate);
    if (!isRoot) {
      var remove = el("button", { type: "button", className: "rb-btn rb-remove", text: "Remove", "data-rb-path": path, "data-rb-role": "remove",
        "aria-label": "Remove " + path });
      remove.addEventListener("click", function () { self.remove(path, replace); });
      bar.appendChild(remove);
    }
    return bar;
  };

  // Removing a node takes its controls away: the keyboard goes on from the node that moves up into
  // its place, or from its group's "Add condition" button when it was the last one.
  Builder.prototype.remove = function (path, replace) {
    replace(null);
    this.changed({ rerender: true });
    var next = this.tree.querySelector('[data-rb-path="' + path + '"]');
    var group = path.replace(/\.(all|any)\[\d+\]$|^(all|any)\[\d+\]$/, "");
    var fallback = this.tree.querySelector('[data-rb-path="' + group + '"][data-rb-role="add-condition"]');
    (next || fallback || this.tree).focus();
  };

  Builder.prototype.renderGroup = function (node, path, replace, isRoot) {
    var self = this;
    var key = Array.isArray(node.all) ? "all" : "any";
    var items = node[key];
    var box = el("div", { className: "rb-node rb-group rb-group-" + key, "data-rb-node": path, role: "group",
      "aria-label": (key === "all" ? "All of" : "Any of") + " group " + (path || "(whole rule)") });
    var head = el("div", { className: "rb-head" });
    var select = el("select", { "aria-label": "Group type", "data-rb-path": path, "data-rb-role": "group" }, [
      option("all", "ALL of these hold", key === "all"),
      option("any", "ANY of these holds", key === "any")
    ]);
    select.addEventListener("change", function () {
      var replacement = {};
      replacement[select.value] = items;
      replace(replacement);
      self.changed({ rerender: true });
    });
    head.appendChild(select);
    head.appendChild(this.toolbar(path, replace, node, isRoot));
    box.appendChild(head);
    box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
    var list = el("ol", { className: "rb-children" });
    items.forEach(function (child, index) {
      var childPath = joinPath(path, key) + "[" + index + "]";
      var item = el("li");
      item.appendChild(self.renderNode(child, childPath, function (replacement) {
        if (replacement === null) items.splice(index, 1); else items[index] = replacement;
      }, false));
      list.appendChild(item);
    });
    box.appendChild(list);
    var adders = el("div", { className: "rb-adders" });
    // A new condition starts empty and asks for its field: nothing changes the count until chosen.
    [["Add condition", function () { return {}; }, "add-condition"],
     ["Add event condition", function () { return { event: { kind: "email_click" }, op: "performed", within_days: 30 }; }, "add-event"],
     ["Add group", function () { return { any: [] }; }, "add-group"]].forEach(function (spec) {
      var button = el("button", { type: "button", className: "rb-btn", text: spec[0], "data-rb-path": path, "data-rb-role": spec[2],
        "aria-label": spec[0] + " to " + (path || "the whole rule") });
      button.addEventListener("click", function () {
        items.push(spec[1]());
        self.changed({ rerender: true });
        var added = self.tree.querySelector('[data-rb-node="' + joinPath(path, key) + "[" + (items.length - 1) + ']"] select, [data-rb-node="' + joinPath(path, key) + "[" + (items.length - 1) + ']"] input');
        if (added) added.focus();
      });
      adders.appendChild(button);
    });
    box.appendChild(adders);
    return box;
  };

  Builder.prototype.renderNot = function (node, path, replace, isRoot) {
    var self = this;
    var box = el("div", { className: "rb-node rb-not", "data-rb-node": path, role: "group", "aria-label": "Not " + path });
    var head = el("div", { className: "rb-head" }, [el("strong", { text: "NOT" })]);
    var unwrap = el("button", { type: "button", className: "rb-btn", text: "Remove NOT", "data-rb-path": path, "data-rb-role": "unwrap",
      "aria-label": "Remove NOT at " + (path || "the whole rule") });
    unwrap.addEventListener("click", function () { replace(node.not); self.changed({ rerender: true }); });
    head.appendChild(unwrap);
    if (!isRoot) {
      var remove = el("button", { type: "button", className: "rb-btn rb-remove", text: "Remove", "data-rb-path": path, "data-rb-role": "remove",
        "aria-label": "Remove " + path });
      remove.addEventListener("click", function () { self.remove(path, replace); });
      head.appendChild(remove);
    }
    box.appendChild(head);
    box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
    box.appendChild(this.renderNode(node.not, joinPath(path, "not"), function (replacement) {
      node.not = replacement === null ? { all: [] } : replacement;
    }, false));
    return box;
  };

  Builder.prototype.fieldPicker = function (path, selected, onPick) {
    var select = el("select", { "aria-label": "Field", "data-rb-path": path, "data-rb-role": "field", className: "rb-field" });
    var known = false;
    this.catalog.layers.forEach(function (group) {
      var optgroup = el("optgroup", { label: group.label });
      group.fields.forEach(function (field) {
        if (field.path === selected) known = true;
        optgroup.appendChild(option(field.path, field.label + " (" + field.path + ")", field.path === selected));
      });
      select.appendChild(optgroup);
    });
    select.appendChild(el("optgroup", { label: "Events" }, [option(EVENT_CHOICE, "Activity (event condition)", selected === EVENT_CHOICE)]));
    select.appendChild(el("optgroup", { label: "Segments" }, [option(SEGMENT_CHOICE, "Member of a segment", selected === SEGMENT_CHOICE)]));
    if (!selected) select.insertBefore(option("", "Choose a field…", true), select.firstChild);
    if (!known && selected && selected !== EVENT_CHOICE && selected !== SEGMENT_CHOICE) {
      select.insertBefore(option(selected, selected + " (unknown field)", true), select.firstChild);
    }
    select.addEventListener("change", function () { onPick(select.value, select); });
    return select;
  };

  Builder.prototype.switchKind = function (choice, replace, path, picker) {
    var condition;
    if (choice === EVENT_CHOICE) condition = { event: { kind: "email_click" }, op: "performed", within_days: 30 };
    else if (choice === SEGMENT_CHOICE) condition = { in_segment: "" };  // asks which segment
    else if (choice === "") condition = {};
    else {
      var field = this.fields[choice];
      var op = field ? this.catalog.operators[field.type][0] : "eq";
      condition = { field: choice, op: op };
      var value = this.defaultValue(field, op);
      if (value !== undefined) condition.value = value;
    }
    replace(condition);
    this.changed();
    this.redrawAround(picker, this.renderNode(condition, path, replace, path === ""));
  };

  // Draw a condition again around its field picker, which stays in the page the whole time: a
  // select taken out of the page loses the focus, and with it the letters typed so far ("Lead"
  // on the way to "Lead score") and the place reached with the arrow keys.
  Builder.prototype.redrawAround = function (picker, fresh) {
    var box = picker.closest("[data-rb-node]");
    var twin = fresh.querySelector('[data-rb-role="field"]');
    function transplant(from, into, keep, skip) {
      Array.prototype.slice.call(into.childNodes).forEach(function (child) { if (child !== keep) into.removeChild(child); });
      var before = true;
      Array.prototype.slice.call(from.childNodes).forEach(function (child) {
        if (child === skip) { before = false; return; }
        if (before) into.insertBefore(child, keep); else into.appendChild(child);
      });
    }
    transplant(twin.parentNode, picker.parentNode, picker, twin);
    transplant(fresh, box, picker.parentNode, twin.parentNode);
    box.className = fresh.className;
    box.setAttribute("aria-label", fresh.getAttribute("aria-label"));
  };

  Builder.prototype.defaultValue = function (field, op) {
    if (NO_VALUE.indexOf(op) >= 0) return undefined;
    var type = field ? field.type : "text";
    if (op === "between") return type === "date" || type === "datetime" ? ["", ""] : [0, 0];
    if (DAY_OPS.indexOf(op) >= 0) return 30;
    if (PERCENT_OPS.indexOf(op) >= 0) return 10;
    if (LIST_OPS.indexOf(op) >= 0) return [];  // "is one of" asks for its values
    return "";  // a number, a text or a choice to enter: the preview asks for it
  };

  Builder.prototype.renderCondition = function (node, path, replace, isRoot) {
    var self = this;
    var field = this.fields[node.field];
    var box = el("div", { className: "rb-node rb-condition", "data-rb-node": path, role: "group", "aria-label": "Condition " + path });
    var row = el("div", { className: "rb-row" });
    row.appendChild(this.fieldPicker(path, node.field, function (choice, picker) { self.switchKind(choice, replace, path, picker); }));
    if (!node.field) {  // a new condition: only the field to choose
      row.appendChild(this.toolbar(path, replace, node, isRoot));
      box.appendChild(row);
      box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
      return box;
    }
    var ops = field ? this.catalog.operators[field.type] : [node.op];
    var opSelect = el("select", { "aria-label": "Operator", "data-rb-path": path, "data-rb-role": "op" });
    ops.forEach(function (op) { opSelect.appendChild(option(op, self.words[op] || op, op === node.op)); });
    if (ops.indexOf(node.op) < 0) opSelect.insertBefore(option(node.op, (node.op || "") + " (not allowed)", true), opSelect.firstChild);
    opSelect.addEventListener("change", function () {
      var before = node.op;
      node.op = opSelect.value;
      var sameShape = (LIST_OPS.indexOf(before) >= 0) === (LIST_OPS.indexOf(node.op) >= 0) &&
        (before === "between") === (node.op === "between") &&
        (DAY_OPS.concat(PERCENT_OPS).indexOf(before) >= 0) === (DAY_OPS.concat(PERCENT_OPS).indexOf(node.op) >= 0) &&
        NO_VALUE.indexOf(before) < 0;
      if (NO_VALUE.indexOf(node.op) >= 0) delete node.value;
      else if (!sameShape || !("value" in node)) node.value = self.defaultValue(field, node.op);
      self.changed({ rerender: true });
    });
    row.appendChild(opSelect);
    var value = this.valueInput(node, field, path);
    if (value) row.appendChild(value);
    row.appendChild(this.toolbar(path, replace, node, isRoot));
    box.appendChild(row);
    box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
    return box;
  };

  Builder.prototype.numberOrText = function (raw) {
    if (raw.trim() === "") return "";
    var number = Number(raw);
    return isNaN(number) ? raw : number;
  };

  Builder.prototype.valueInput = function (node, field, path) {
    var self = this;
    var op = node.op;
    var type = field ? field.type : "text";
    if (NO_VALUE.indexOf(op) >= 0) return null;
    var attrs = function (role, label) { return { "data-rb-path": path, "data-rb-role": role, "aria-label": label }; };
    if (op === "between") {
      var pair = Array.isArray(node.value) ? node.value : ["", ""];
      var wrap = el("span", { className: "rb-between" });
      [0, 1].forEach(function (i) {
        var input = el("input", Object.assign(attrs("value-" + i, i === 0 ? "From" : "To"),
          { type: type === "number" ? "number" : "date", step: "any", value: pair[i] === undefined ? "" : pair[i] }));
        input.addEventListener("input", function () {
          pair[i] = type === "number" ? self.numberOrText(input.value) : input.value;
          node.value = pair;
          self.changed();
        });
        wrap.appendChild(input);
        if (i === 0) wrap.appendChild(el("span", { text: "and" }));
      });
      return wrap;
    }
    if (DAY_OPS.indexOf(op) >= 0 || PERCENT_OPS.indexOf(op) >= 0) {
      var unit = DAY_OPS.indexOf(op) >= 0 ? "days" : "percent";
      var numberInput = el("input", Object.assign(attrs("value", "Number of " + unit), { type: "number", min: "0", step: "any",
        value: node.value === undefined ? "" : node.value, className: "rb-short" }));
      numberInput.addEventListener("input", function () { node.value = self.numberOrText(numberInput.value); self.changed(); });
      return el("span", { className: "rb-unit" }, [numberInput, el("span", { text: unit })]);
    }
    if (LIST_OPS.indexOf(op) >= 0) {
      if (field && field.choices.length) {
        var multi = el("select", Object.assign(attrs("value", "Values (choose one or more)"), { multiple: "multiple", size: String(Math.min(5, field.choices.length)) }));
        var chosen = Array.isArray(node.value) ? node.value : [];
        field.choices.forEach(function (choice, i) { multi.appendChild(option(choice, field.choice_labels[i], chosen.indexOf(choice) >= 0)); });
        multi.addEventListener("change", function () {
          node.value = Array.prototype.filter.call(multi.options, function (o) { return o.selected; }).map(function (o) { return o.value; });
          self.changed();
        });
        return multi;
      }
      var tags = el("input", Object.assign(attrs("value", "Values, separated by commas"), { type: "text",
        value: Array.isArray(node.value) ? node.value.join(", ") : (node.value || ""), placeholder: "a, b, c" }));
      tags.addEventListener("input", function () {
        node.value = tags.value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
        self.changed();
      });
      return tags;
    }
    if (type === "choice" && field.choices.length) {
      var single = el("select", attrs("value", "Value"));
      field.choices.forEach(function (choice, i) { single.appendChild(option(choice, field.choice_labels[i], choice === node.value)); });
      if (!node.value) single.insertBefore(option("", "Choose a value…", true), single.firstChild);
      else if (field.choices.indexOf(node.value) < 0) single.insertBefore(option(node.value, node.value + " (not a choice)", true), single.firstChild);
      single.addEventListener("change", function () { node.value = single.value; self.changed(); });
      return single;
    }
    var inputType = type === "number" ? "number" : (type === "date" || type === "datetime") ? "date" : "text";
    var input = el("input", Object.assign(attrs("value", "Value"), { type: inputType, step: "any",
      value: node.value === undefined || node.value === null ? "" : String(node.value).slice(0, inputType === "date" ? 10 : undefined) }));
    input.addEventListener("input", function () {
      node.value = type === "number" ? self.numberOrText(input.value) : input.value;
      self.changed();
    });
    return input;
  };

  Builder.prototype.renderEvent = function (node, path, replace, isRoot) {
    var self = this;
    var filters = node.event && typeof node.event === "object" ? node.event : (node.event = { kind: "email_click" });
    var box = el("div", { className: "rb-node rb-condition rb-event", "data-rb-node": path, role: "group", "aria-label": "Event condition " + path });
    var row = el("div", { className: "rb-row" });
    row.appendChild(this.fieldPicker(path, EVENT_CHOICE, function (choice, picker) { self.switchKind(choice, replace, path, picker); }));
    var kind = el("select", { "aria-label": "Activity kind", "data-rb-path": path, "data-rb-role": "kind" });
    this.catalog.event_kinds.forEach(function (pair) { kind.appendChild(option(pair[0], pair[1], pair[0] === filters.kind)); });
    kind.addEventListener("change", function () { filters.kind = kind.value; self.changed(); });
    row.appendChild(kind);
    var op = el("select", { "aria-label": "Event operator", "data-rb-path": path, "data-rb-role": "op" });
    this.catalog.event_ops.forEach(function (name) { op.appendChild(option(name, self.words[name] || name, name === node.op)); });
    op.addEventListener("change", function () {
      node.op = op.value;
      if (EVENT_VALUE_OPS.indexOf(node.op) >= 0) { if (typeof node.value !== "number") node.value = 1; }
      else delete node.value;
      self.changed({ rerender: true });
    });
    row.appendChild(op);
    if (EVENT_VALUE_OPS.indexOf(node.op) >= 0) {
      var count = el("input", { type: "number", min: "0", step: "any", className: "rb-short", "aria-label": node.op === "sum_gte" ? "Sum of values" : "Number of times",
        value: node.value === undefined ? "" : node.value, "data-rb-path": path, "data-rb-role": "value" });
      count.addEventListener("input", function () { node.value = self.numberOrText(count.value); self.changed(); });
      row.appendChild(count);
    }
    var windowInput = el("input", { type: "number", min: "1", step: "1", className: "rb-short", "aria-label": "Within days (empty: all time)",
      placeholder: "all time", value: node.within_days === undefined ? "" : node.within_days, "data-rb-path": path, "data-rb-role": "within_days" });
    windowInput.addEventListener("input", function () {
      if (windowInput.value.trim() === "") delete node.within_days; else node.within_days = self.numberOrText(windowInput.value);
      self.changed();
    });
    row.appendChild(el("span", { className: "rb-unit" }, [el("span", { text: "within" }), windowInput, el("span", { text: "days" })]));
    row.appendChild(this.toolbar(path, replace, node, isRoot));
    box.appendChild(row);
    var details = el("div", { className: "rb-row rb-event-filters" });
    [["topic", "Topic"], ["product", "Product"], ["campaign", "Campaign"], ["url_contains", "URL contains"]].forEach(function (spec) {
      var input = el("input", { type: "text", placeholder: spec[1] + " (any)", "aria-label": spec[1], value: filters[spec[0]] || "",
        "data-rb-path": path, "data-rb-role": spec[0] });
      input.addEventListener("input", function () {
        if (input.value.trim() === "") delete filters[spec[0]]; else filters[spec[0]] = input.value;
        self.changed();
      });
      details.appendChild(input);
    });
    box.appendChild(details);
    box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
    return box;
  };

  Builder.prototype.renderSegment = function (node, path, replace, isRoot) {
    var self = this;
    var box = el("div", { className: "rb-node rb-condition rb-segment", "data-rb-node": path, role: "group", "aria-label": "Segment condition " + path });
    var row = el("div", { className: "rb-row" });
    row.appendChild(this.fieldPicker(path, SEGMENT_CHOICE, function (choice, picker) { self.switchKind(choice, replace, path, picker); }));
    var select = el("select", { "aria-label": "Segment", "data-rb-path": path, "data-rb-role": "in_segment" });
    var known = false;
    this.catalog.segments.forEach(function (pair) {
      if (pair[0] === node.in_segment) known = true;
      select.appendChild(option(pair[0], pair[1] + " (" + pair[0] + ")", pair[0] === node.in_segment));
    });
    if (!node.in_segment) select.insertBefore(option("", "Choose a segment…", true), select.firstChild);
    else if (!known) select.insertBefore(option(node.in_segment, node.in_segment + " (unknown)", true), select.firstChild);
    select.addEventListener("change", function () { node.in_segment = select.value; self.changed(); });
    row.appendChild(select);
    row.appendChild(this.toolbar(path, replace, node, isRoot));
    box.appendChild(row);
    box.appendChild(el("div", { className: "rb-node-errors", "data-rb-errors-for": path }));
    return box;
  };

  // Server round trips -------------------------------------------------------------------------

  Builder.prototype.csrf = function () {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  };

  Builder.prototype.post = function (url, payload) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": this.csrf() },
      body: JSON.stringify(payload)
    }).then(function (response) { return response.json(); });
  };

  Builder.prototype.schedulePreview = function (delay) {
    var self = this;
    clearTimeout(this.timer);
    this.root.classList.add("rb-pending");
    this.timer = setTimeout(function () { self.preview(); }, delay === undefined ? 400 : delay);
  };

  Builder.prototype.preview = function () {
    var self = this;
    var number = ++this.requestNumber;
    var parent = document.getElementById("id_parent");
    var payload = { rule: this.rule, parent: parent && parent.value ? parent.value : null };
    if (this.root.dataset.segmentId) payload.segment = this.root.dataset.segmentId;
    this.post(this.root.dataset.previewUrl, payload)
      .then(function (answer) {
        if (number !== self.requestNumber) return;  // a newer edit is on its way
        self.root.classList.remove("rb-pending");
        self.showErrors(answer.ok ? [] : answer.errors);
        self.samples.textContent = "";
        if (!answer.ok) {
          self.count.textContent = "Fix the " + (answer.errors.length === 1 ? "error" : answer.errors.length + " errors") + " marked in the rule to see a count.";
          self.count.dataset.state = "error";
          return;
        }
        self.count.dataset.state = "ok";
        self.count.textContent = answer.count.toLocaleString("en") + (answer.count === 1 ? " contact matches" : " contacts match") +
          " (" + answer.took_ms + " ms)";
        answer.samples.forEach(function (contact) {
          self.samples.appendChild(el("li", {}, [el("a", { href: contact.url, target: "_blank", text: contact.name || contact.email }),
            el("span", { className: "rb-muted", text: " " + contact.email })]));
        });
        if (self.impact && answer.impact) self.showImpact(answer.impact);
      })
      .catch(function () {
        if (number !== self.requestNumber) return;
        self.root.classList.remove("rb-pending");
        self.count.dataset.state = "error";
        self.count.textContent = "The preview is not available right now.";
      });
  };

  // What saving the edited rule would do to the segment's stored members (issue 17 item 7).
  Builder.prototype.showImpact = function (impact) {
    var n = function (value) { return value.toLocaleString("en"); };
    var box = this.impact;
    box.textContent = "";
    box.appendChild(el("h4", { text: "If saved now" }));
    box.appendChild(el("p", { className: "rb-impact-figures", "data-rb-impact-figures": "" }, [
      el("strong", { className: "rb-joins", text: "+" + n(impact.joins) }), document.createTextNode(" would join, "),
      el("strong", { className: "rb-leaves", text: "−" + n(impact.leaves) }), document.createTextNode(" would leave: "),
      document.createTextNode(n(impact.size_now) + " → "), el("strong", { text: n(impact.size_after) }),
      document.createTextNode(" members.")]));
    var rows = impact.join_sample.map(function (s) { return [s, "joins"]; })
      .concat(impact.leave_sample.map(function (s) { return [s, "leaves"]; }));
    if (rows.length) {
      box.appendChild(el("ul", { className: "rb-impact-sample" }, rows.map(function (row) {
        return el("li", {}, [el("a", { href: row[0].url, target: "_blank", text: row[0].email }),
          el("span", { text: " " + row[1] + ": " }), el("span", { className: "rb-muted", text: row[0].why })]);
      })));
    }
    var receivers = impact.receivers.map(function (r) { return r.what + " “" + r.name + "”" + (r.through ? " (through " + r.through + ")" : ""); });
    var downstream = impact.downstream_segments.map(function (s) { return s.name; });
    box.appendChild(el("p", { "data-rb-impact-receivers": "", text: "Receives the change: " + (receivers.length ? receivers.join("; ") : "nothing outside segments") +
      (downstream.length ? ". Segments downstream: " + downstream.join(", ") : "") + "." }));
  };

  Builder.prototype.nodeFor = function (errorPath) {
    // The deepest drawn node whose path is a prefix of the error's path.
    var best = null;
    this.tree.querySelectorAll("[data-rb-errors-for]").forEach(function (slot) {
      var path = slot.dataset.rbErrorsFor;
      var matches = path === "" || errorPath === path || errorPath.indexOf(path + ".") === 0 || errorPath.indexOf(path + "[") === 0;
      if (matches && (best === null || path.length > best.dataset.rbErrorsFor.length)) best = slot;
    });
    return best;
  };

  Builder.prototype.showErrors = function (errors) {
    var self = this;
    this.tree.querySelectorAll("[data-rb-errors-for]").forEach(function (slot) { slot.textContent = ""; });
    this.tree.querySelectorAll("[aria-invalid]").forEach(function (input) { input.removeAttribute("aria-invalid"); });
    this.tree.querySelectorAll(".rb-has-error").forEach(function (node) { node.classList.remove("rb-has-error"); });
    this.errorList.textContent = "";
    this.errorList.hidden = errors.length === 0;
    errors.forEach(function (error) {
      self.errorList.appendChild(el("li", { text: (error.path || "rule") + ": " + error.message }));
      var slot = self.nodeFor(error.path);
      if (!slot) return;
      slot.appendChild(el("p", { className: "rb-error", role: "alert", "data-rb-error-path": error.path, text: error.message }));
      slot.parentNode.classList.add("rb-has-error");
      var nodePath = slot.dataset.rbErrorsFor;
      var rest = error.path.slice(nodePath.length).replace(/^\./, "");
      var role = rest.split(/[.\[]/)[0];
      if (role === "event") role = rest.split(".")[1] || "kind";
      var input = slot.parentNode.querySelector('[data-rb-path="' + nodePath + '"][data-rb-role^="' + (role || "value") + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
    });
  };

  Builder.prototype.explain = function () {
    var self = this;
    var result = this.root.querySelector("[data-rb-explain-result]");
    var contact = this.root.querySelector("[data-rb-explain-contact]").value;
    result.textContent = "Explaining…";
    this.post(this.root.dataset.explainUrl, { rule: this.rule, contact: contact }).then(function (answer) {
      result.textContent = "";
      self.tree.querySelectorAll("[data-rb-verdict]").forEach(function (badge) { badge.remove(); });
      if (!answer.ok) {
        result.appendChild(el("p", { className: "rb-error", text: answer.errors.map(function (e) { return (e.path ? e.path + ": " : "") + e.message; }).join(" ") }));
        return;
      }
      var who = answer.contact.name ? answer.contact.name + " <" + answer.contact.email + ">" : answer.contact.email;
      result.appendChild(el("p", { className: "rb-verdict-line " + (answer.result ? "rb-true" : "rb-false"),
        text: who + (answer.result ? " matches the rule." : " does not match the rule.") }));
      result.appendChild(self.explainTree(answer.tree));
    }).catch(function () { result.textContent = "The explainer is not available right now."; });
  };

  Builder.prototype.explainTree = function (node) {
    var self = this;
    var item = el("li", { className: node.result ? "rb-true" : "rb-false", "data-rb-explain-path": node.path });
    item.appendChild(el("span", { className: "rb-mark", "aria-hidden": "true", text: node.result ? "✓" : "✗" }));
    item.appendChild(el("span", { className: "rb-visually-hidden", text: node.result ? "true: " : "false: " }));
    item.appendChild(el("span", { text: node.text }));
    var slot = this.tree.querySelector('[data-rb-errors-for="' + node.path + '"]');
    if (slot) {
      slot.parentNode.querySelector(".rb-head, .rb-row").appendChild(el("span", { className: "rb-badge " + (node.result ? "rb-true" : "rb-false"),
        "data-rb-verdict": node.result ? "true" : "false", text: node.result ? "true" : "false" }));
    }
    if (node.children && node.children.length) {
      var list = el("ul", { className: "rb-explain-tree" });
      node.children.forEach(function (child) { list.appendChild(self.explainTree(child)); });
      item.appendChild(list);
    }
    return node.path === "" ? el("ul", { className: "rb-explain-tree" }, [item]) : item;
  };

  function start() {
    document.querySelectorAll("[data-rule-builder]").forEach(function (root) {
      if (!root.dataset.started) { root.dataset.started = "1"; root.ruleBuilder = new Builder(root); }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
