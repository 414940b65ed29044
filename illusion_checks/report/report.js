// Item explorer. Model outputs are untrusted: every string reaches the page through
// textContent or a Text node, never as markup.
(function () {
  "use strict";
  var PAGE = 200;
  var FATES = { kept: "kept", mc_only: "MC-only", produced_only: "produced-only", lost: "lost" };
  // gold_token.source: the model's own first token of a gold it produced, or the gold's token.
  var TOKEN_SOURCES = { produced: "as the model produced it", gold: "from the gold" };
  var data = JSON.parse(document.getElementById("items-data").textContent);
  var items = data.items;
  var form = document.getElementById("explorer-filters");
  var langSel = document.getElementById("filter-lang");
  var fateSel = document.getElementById("filter-fate");
  var search = document.getElementById("filter-text");
  var list = document.getElementById("item-list");
  var status = document.getElementById("explorer-status");
  var more = document.getElementById("show-more");
  var matches = [];
  var shown = 0;
  var haystacks = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Model and dataset text, in whatever script: let the browser pick its direction (RTL for ar).
  function textEl(tag, cls, text) {
    var node = el(tag, cls, text);
    node.dir = "auto";
    return node;
  }

  // Whitespace and invisible characters made visible, for tokens: a space as \u2423, a newline
  // as \n, any other as \u{hex}.
  function visible(text) {
    return String(text).replace(/[\s\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2060\ufeff]/g, function (c) {
      if (c === " ") return "\u2423";
      if (c === "\n") return "\\n";
      if (c === "\t") return "\\t";
      if (c === "\r") return "\\r";
      return "\\u{" + c.charCodeAt(0).toString(16) + "}";
    });
  }

  function mark(ok) {
    return el("span", ok ? "ok" : "bad", ok ? "\u2713" : "\u2717");
  }

  // Gold and aliases, longest first, for highlighting.
  function needles(it) {
    return [it.gold].concat(it.aliases || []).filter(function (s) { return s && s.trim(); })
      .sort(function (a, b) { return b.length - a.length; });
  }

  // Text with each case-insensitive occurrence of a needle wrapped in <mark>, built from
  // Text nodes only. When lowercasing changes the length (some Unicode), match exactly.
  function highlighted(text, words) {
    var frag = document.createDocumentFragment();
    text = String(text);
    var lower = text.toLowerCase();
    var hay = lower.length === text.length ? lower : text;
    var keys = words.map(function (w) { return hay === lower ? w.toLowerCase() : w; });
    var pos = 0;
    while (pos < text.length) {
      var best = -1, bestLen = 0;
      for (var k = 0; k < keys.length; k++) {
        var at = hay.indexOf(keys[k], pos);
        if (at !== -1 && (best === -1 || at < best)) { best = at; bestLen = keys[k].length; }
      }
      if (best === -1) break;
      if (best > pos) frag.appendChild(document.createTextNode(text.slice(pos, best)));
      frag.appendChild(el("mark", "gold", text.slice(best, best + bestLen)));
      pos = best + bestLen;
    }
    if (pos < text.length) frag.appendChild(document.createTextNode(text.slice(pos)));
    return frag;
  }

  // A probe that did not run (one_shot without an exemplar) is null: it adds no text.
  function outputOf(probe) {
    return probe ? probe.output : "";
  }

  function haystack(it) {
    var parts = [it.id, it.question, it.gold].concat(it.aliases);
    ["reference", "compressed"].forEach(function (m) {
      var o = it[m];
      parts.push(outputOf(o.ff), outputOf(o.cs), outputOf(o.one_shot), outputOf(o.zero_shot_short));
    });
    return parts.join("\n").toLowerCase();
  }

  function matchesFilters(it, i, lang, fate, q) {
    if (lang && it.lang !== lang) return false;
    if (fate && (fate === "none" ? it.fate !== null : it.fate !== fate)) return false;
    return !q || haystacks[i].indexOf(q) !== -1;
  }

  function applyFilters() {
    var lang = langSel.value, fate = fateSel.value, q = search.value.trim().toLowerCase();
    if (q && haystacks === null) haystacks = items.map(haystack);
    matches = [];
    for (var i = 0; i < items.length; i++) {
      if (matchesFilters(items[i], i, lang, fate, q)) matches.push(i);
    }
    list.replaceChildren();
    shown = 0;
    renderMore();
  }

  function renderMore() {
    var frag = document.createDocumentFragment();
    var end = Math.min(shown + PAGE, matches.length);
    for (var k = shown; k < end; k++) frag.appendChild(row(matches[k]));
    list.appendChild(frag);
    shown = end;
    more.hidden = shown >= matches.length;
    more.textContent = "Show " + Math.min(PAGE, matches.length - shown) + " more";
    status.textContent = "Showing " + shown + " of " + matches.length + " matching items (" +
      items.length + " in total).";
  }

  function row(i) {
    var it = items[i];
    var li = el("li", "item");
    var btn = el("button", "item-row");
    btn.type = "button";
    btn.id = "item-" + i;
    btn.setAttribute("aria-expanded", "false");
    btn.setAttribute("aria-controls", "item-detail-" + i);
    btn.appendChild(el("span", "lang", it.lang));
    btn.appendChild(el("span", "id", it.id));
    btn.appendChild(el("span", "fate fate-" + (it.fate || "none"), it.fate ? FATES[it.fate] : "\u2014"));
    btn.appendChild(textEl("span", "question", it.question));
    btn.appendChild(textEl("span", "goldcol", it.gold));
    var cells = [it.reference.ff.correct, it.compressed.ff.correct, it.compressed.mc.correct];
    cells.forEach(function (ok) { var s = el("span", "flag"); s.appendChild(mark(ok)); btn.appendChild(s); });
    btn.appendChild(el("span", "rank", rankText(it.reference) + " \u2192 " + rankText(it.compressed)));
    btn.addEventListener("click", function () { toggle(li, btn, i); });
    li.appendChild(btn);
    return li;
  }

  // An outcome's gold rank: the rank, ">k" where a server's top-k log-probabilities only show it is
  // beyond them (gold_rank null, gold_rank_above k), or a dash where the gold has no ranked token.
  function rankText(o) {
    if (censored(o)) return ">" + String(o.gold_rank_above);
    return o.gold_rank === null || o.gold_rank === undefined ? "\u2013" : String(o.gold_rank);
  }

  function censored(o) {
    return (o.gold_rank === null || o.gold_rank === undefined) &&
      o.gold_rank_above !== null && o.gold_rank_above !== undefined;
  }

  function toggle(li, btn, i) {
    var open = btn.getAttribute("aria-expanded") === "true";
    var detail = li.querySelector(".item-detail");
    if (!detail) {
      detail = details(items[i]);
      detail.id = "item-detail-" + i;
      li.appendChild(detail);
    }
    detail.hidden = open;
    btn.setAttribute("aria-expanded", open ? "false" : "true");
  }

  function section(title) {
    var s = el("section", "detail-part");
    s.appendChild(el("h4", null, title));
    return s;
  }

  function details(it) {
    var gold = needles(it);
    var box = el("div", "item-detail");
    var q = section("Question");
    q.appendChild(textEl("p", "question-full", it.question));
    var g = el("p");
    g.appendChild(el("strong", null, "Gold: "));
    g.appendChild(el("mark", "gold", it.gold));
    if (it.aliases.length) g.appendChild(el("span", "muted", " (also: " + it.aliases.join(", ") + ")"));
    q.appendChild(g);
    q.appendChild(rankLine(it.reference, it.compressed));
    box.appendChild(q);

    var p = section("Passage");
    var passage = textEl("p", "passage");
    passage.appendChild(highlighted(it.context, gold));
    p.appendChild(passage);
    box.appendChild(p);

    box.appendChild(optionsTable(it));
    box.appendChild(outputsTable(it, gold));
    box.appendChild(searchOutputs(it, gold, "beam", "Beam search (5 beams)"));
    box.appendChild(searchOutputs(it, gold, "sample", "Samples (10, top-p 0.9)"));
    return box;
  }

  // "reference 1 (margin +2.10) -> compressed 3 (margin -0.40) of 'Paris' (id 1234, after '\n',
  // offset 1)": the ranked token once when both models ranked the same one, else after each rank.
  function rankLine(ref, comp) {
    var p = el("p", "rank-line");
    var same = sameToken(ref.gold_token, comp.gold_token);
    p.appendChild(el("strong", null, "Gold first-token rank: "));
    p.appendChild(document.createTextNode("reference " + rankText(ref) +
      (censored(ref) ? " (beyond the server's top " + ref.gold_rank_above + ")" : "") +
      " (margin " + fmt(ref.gold_margin) + ")"));
    if (!same) appendToken(p, ref.gold_token);
    p.appendChild(document.createTextNode(" \u2192 compressed " + rankText(comp) +
      (censored(comp) ? " (beyond the server's top " + comp.gold_rank_above + ")" : "") +
      " (margin " + fmt(comp.gold_margin) + ")"));
    appendToken(p, comp.gold_token);
    return p;
  }

  function sameToken(a, b) {
    if (!a || !b) return !a && !b;
    return a.id === b.id && a.text === b.text && a.offset === b.offset &&
      a.conditioned_on === b.conditioned_on && a.boundary_ok === b.boundary_ok && a.source === b.source;
  }

  // The ranked token (null when the gold has no content token, absent in older results).
  function appendToken(p, t) {
    if (!t) return;
    p.appendChild(document.createTextNode(" of "));
    p.appendChild(textEl("code", "token", "'" + visible(t.text) + "'"));
    var where = t.offset ? "after '" + visible(t.conditioned_on) + "', offset " + t.offset : "at the answer start";
    var origin = TOKEN_SOURCES[t.source] || (t.source ? String(t.source) : "");
    p.appendChild(document.createTextNode(" (id " + t.id + ", " + where + (origin ? ", " + origin : "") + ")"));
    if (t.boundary_ok === false) {
      p.appendChild(el("span", "muted", " tokens merged across the answer boundary"));
    }
  }

  function fmt(x) {
    if (x === null || x === undefined) return "\u2013";
    return typeof x === "number" ? (x >= 0 ? "+" : "") + x.toFixed(2) : String(x);
  }

  function table(head) {
    var t = el("table", "detail-table");
    var tr = el("tr");
    head.forEach(function (h) { var th = el("th", null, h); th.scope = "col"; tr.appendChild(th); });
    t.appendChild(el("thead")).appendChild(tr);
    t.appendChild(el("tbody"));
    return t;
  }

  function optionsTable(it) {
    var s = section("Options (MC log-prob scores)");
    var t = table(["option", "reference", "compressed"]);
    it.options.forEach(function (opt, k) {
      var tr = el("tr", k === it.gold_index ? "gold-row" : null);
      var td = textEl("td");
      if (k === it.gold_index) td.appendChild(el("mark", "gold", opt)); else td.textContent = opt;
      tr.appendChild(td);
      ["reference", "compressed"].forEach(function (m) {
        var mc = it[m].mc;
        var c = el("td", "num", fmt(mc.scores[k]));
        if (mc.choice === k) c.appendChild(el("span", k === it.gold_index ? "ok" : "bad", " \u25C0 chosen"));
        tr.appendChild(c);
      });
      t.tBodies[0].appendChild(tr);
    });
    s.appendChild(t);
    return s;
  }

  function outputCell(probe, gold) {
    var td = textEl("td");
    td.appendChild(mark(probe.correct));
    td.appendChild(document.createTextNode(" "));
    td.appendChild(highlighted(probe.output, gold));
    if (typeof probe.f1 === "number") td.appendChild(el("span", "muted", " F1 " + probe.f1.toFixed(2)));
    if (probe.correct && probe.begins_with_gold === false) {
      td.appendChild(el("span", "muted", " \u00b7 does not begin with the gold"));
    }
    if (probe.exemplar_id !== undefined && probe.exemplar_id !== null) {
      td.appendChild(el("span", "muted", " \u00b7 exemplar " + probe.exemplar_id +
        (probe.exemplar_source ? " (" + probe.exemplar_source + ")" : "")));
    }
    return td;
  }

  function outputsTable(it, gold) {
    var s = section("Outputs");
    var t = table(["probe", "reference", "compressed"]);
    var probes = [["ff", "FF (open, greedy)"], ["cs", "CS (candidates shown)"],
                  ["zero_shot_short", "0-shot, 500-char context"], ["one_shot", "1-shot"]];
    Object.keys(it.reference.ablations || {}).forEach(function (name) {
      probes.push(["ablation:" + name, "CS ablation: " + name]);
    });
    probes.forEach(function (p) {
      var tr = el("tr");
      var th = el("th", null, p[1]);
      th.scope = "row";
      tr.appendChild(th);
      ["reference", "compressed"].forEach(function (m) {
        var o = it[m];
        var probe = p[0].indexOf("ablation:") === 0 ? (o.ablations || {})[p[0].slice(9)] : o[p[0]];
        if (probe) tr.appendChild(outputCell(probe, gold));
        else tr.appendChild(el("td", "muted", p[0] === "one_shot" ? "not run (no exemplar for this language)" : "not run"));
      });
      t.tBodies[0].appendChild(tr);
    });
    s.appendChild(t);
    return s;
  }

  function searchOutputs(it, gold, key, title) {
    var s = section(title);
    var wrap = el("div", "search-cols");
    ["reference", "compressed"].forEach(function (m) {
      var col = el("div", "search-col");
      var res = it[m][key] || null;
      var h = el("p");
      h.appendChild(el("strong", null, m + ": "));
      if (!res) {
        h.appendChild(el("span", "muted", "not run on this item"));
        col.appendChild(h);
      } else {
        h.appendChild(mark(res.reached));
        h.appendChild(document.createTextNode(res.reached ? " gold reached" : " gold not reached"));
        col.appendChild(h);
        var ol = el("ol", "outputs");
        res.outputs.forEach(function (out) {
          var li = textEl("li");
          li.appendChild(highlighted(out, gold));
          ol.appendChild(li);
        });
        col.appendChild(ol);
      }
      wrap.appendChild(col);
    });
    s.appendChild(wrap);
    return s;
  }

  var timer = null;
  form.addEventListener("submit", function (e) { e.preventDefault(); applyFilters(); });
  langSel.addEventListener("change", applyFilters);
  fateSel.addEventListener("change", applyFilters);
  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(applyFilters, 120);
  });
  more.addEventListener("click", renderMore);
  applyFilters();
})();
