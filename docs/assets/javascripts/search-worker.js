// The site's search, behind Material's search box: overrides/main.html points Material at this worker,
// which answers Material's messages (SETUP, READY, QUERY, RESULT) with MiniSearch underneath.
//
// - Nothing is loaded until the first query: the index (search/kb_index.js, written by
//   vault/search.py) and the libraries come in then, as scripts, so the offline copy works from
//   file:// through the iframe-worker shim too.
// - One document per page section, ranked with BM25 over: note name and question (weight 4),
//   aliases (3), section heading (2), text (1), topic tags (1), code identifiers (0.5). A page's
//   score is its best section's plus a share of its other sections', scaled by how many of the
//   query's words the page matches, so one frequent word cannot outrank a page matching them all.
// - English and Russian words are stemmed; common words are ignored; each word may carry one typo
//   (two in words of nine letters or more); only the last word typed is also read as a prefix, at
//   a low weight, and only from three letters on.
(function () {
  "use strict";

  var SETUP = 0, READY = 1, QUERY = 2, RESULT = 3;
  var FIELDS = { name: 4, aliases: 3, heading: 2, text: 1, tags: 1, code: 0.5 };
  var SURFACE_BOOST = 1.5;     // a word matched as typed, against its stem alone
  var OTHER_SECTIONS = 0.25;   // share of a page's other matching sections added to its best one
  var MAX_PAGES = 30;
  var STOP_WORDS = new Set((
    "a an and are as at be by can do does for from how i in is it its of on or that the this to " +
    "vs versus what when where which who why with you your would should use used using " +
    "в во и или на не но по с со к ко о об от до для за из как что это чем при ли же а то"
  ).split(" "));
  // Acronyms readers type or spell out; a query spelling one out also searches the acronym.
  var ACRONYMS = [
    ["nms", "non maximum suppression"], ["iou", "intersection over union"],
    ["map", "mean average precision"], ["ap", "average precision"], ["ood", "out of distribution"],
    ["rpn", "region proposal network"], ["fpn", "feature pyramid network"], ["roi", "region of interest"],
    ["vit", "vision transformer"], ["cnn", "convolutional neural network"], ["rnn", "recurrent neural network"],
    ["gan", "generative adversarial network"], ["vae", "variational autoencoder"],
    ["sgd", "stochastic gradient descent"], ["bn", "batch normalization"], ["lr", "learning rate"],
    ["psi", "population stability index"], ["tta", "test time augmentation"],
    ["mlp", "multi layer perceptron"], ["nlp", "natural language processing"], ["ocr", "optical character recognition"],
    ["slo", "service level objective"], ["roc", "receiver operating characteristic"], ["auc", "area under the curve"],
    ["far", "false accept rate"], ["frr", "false reject rate"], ["dlt", "direct linear transform"],
  ];
  var CYRILLIC = /[\u0400-\u04ff]/;
  var WORD = /[\p{L}\p{N}]+/gu;

  // The worker's own URL: in a real worker, location; under the iframe-worker shim (file://), the
  // script element that loaded it.
  var self_url = typeof document !== "undefined" && document.querySelector("script[src]")
    ? document.querySelector("script[src]").src : self.location.href;
  var url = function (path) { return new URL(path, self_url).href; };

  var engine = null, index = null, loading = null;

  function stem(word) {
    var stemmers = self.kbStemmers;
    return CYRILLIC.test(word) ? stemmers.ru.stemmer(word) : stemmers.en.stemmer(word);
  }

  // A word as indexed and searched: its stem and, when that differs, the word itself (so that a
  // typo that changes the stem, "augmentaion", is still one edit from an indexed word). Null for
  // common words.
  function forms(term) {
    var word = term.toLowerCase().replace(/ё/g, "е");
    if (STOP_WORDS.has(word)) return null;
    var stemmed = stem(word);
    return stemmed === word ? [word] : [stemmed, word];
  }

  // Words, plus each hyphenated compound written as one word too ("non-maximum" also gives
  // "nonmaximum"), so that a query holding the compound favours the pages that hold it.
  var COMPOUND = /[\p{L}\p{N}]+(?:-[\p{L}\p{N}]+)+/gu;
  function tokenize(text) {
    var words = text.match(WORD) || [];
    var compounds = text.match(COMPOUND);
    return compounds ? words.concat(compounds.map(function (c) { return c.replace(/-/g, ""); })) : words;
  }

  function load() {
    if (!loading) {
      loading = Promise.resolve()
        .then(function () { return importScripts(url("../vendor/minisearch/minisearch.js")); })
        .then(function () { return importScripts(url("../vendor/stemmers/en.js")); })
        .then(function () { return importScripts(url("../vendor/stemmers/ru.js")); })
        .then(function () { return importScripts(url("../../search/kb_index.js")); })
        .then(build);
    }
    return loading;
  }

  function build() {
    index = self.kbSearchIndex;
    engine = new self.MiniSearch({
      fields: Object.keys(FIELDS),
      tokenize: tokenize,
      processTerm: forms,
    });
    engine.addAll(index.docs.map(function (doc, id) {
      var page = index.pages[doc.p];
      var first = doc.l.indexOf("#") < 0;
      return {
        id: id,
        name: page.n + " " + page.t,
        aliases: first ? page.a.join(" ") : "",
        heading: doc.h,
        text: doc.x,
        tags: first ? page.g : "",
        code: doc.c || "",
      };
    }));
  }

  function typos(term) {
    return term.length >= 9 ? 2 : term.length >= 4 ? 1 : 0;
  }

  // One group of forms per query word, plus one per acronym whose expansion the query spells out
  // ("intersection over union" also searches "iou"); an acronym group stands in for its words.
  function queryGroups(query) {
    var groups = [];
    (query.match(WORD) || []).forEach(function (w) {
      var f = forms(w);
      if (f) groups.push({ forms: f, covers: [groups.length] });
    });
    var base = groups.length;
    function extra(term, parts) {  // a bonus group, standing in for the query words it spells
      var stems = parts.map(forms).filter(Boolean).map(function (f) { return f[0]; });
      var covers = [];
      for (var i = 0; i < base; i++) if (stems.indexOf(groups[i].forms[0]) >= 0) covers.push(i);
      var f = forms(term);
      if (f) groups.push({ forms: f, covers: covers, extra: true });
    }
    (query.match(COMPOUND) || []).forEach(function (c) { extra(c.replace(/-/g, ""), c.split("-")); });
    var spelled = " " + (query.toLowerCase().match(WORD) || []).join(" ") + " ";
    ACRONYMS.forEach(function (pair) {
      if (spelled.indexOf(" " + pair[1] + " ") < 0 || spelled.indexOf(" " + pair[0] + " ") >= 0) return;
      extra(pair[0], pair[1].split(" "));
    });
    return groups;
  }

  function search(query) {
    var words = query.match(WORD) || [];
    var groups = queryGroups(query);
    var base = groups.filter(function (g) { return !g.extra; }).length;
    if (!base) return { items: [] };
    var lastForms = groups.filter(function (g) { return !g.extra; }).pop().forms;
    // A word as typed outranks its stem: "optimizers" favours the page saying "optimizers" over one
    // saying "optimization", though both share the stem "optim".
    var surface = new Set(groups.map(function (g) { return g.forms[g.forms.length - 1]; }));
    var groupsOf = new Map();  // form -> indices of the groups holding it
    groups.forEach(function (g, i) {
      g.forms.forEach(function (f) { groupsOf.set(f, (groupsOf.get(f) || []).concat([i])); });
    });
    var hits = engine.search({
      combineWith: "OR",
      queries: groups.map(function (g) { return { combineWith: "OR", queries: g.forms }; }),
    }, {
      boost: FIELDS,
      fuzzy: function (term) { return typos(term); },
      prefix: function (term) { return lastForms.indexOf(term) >= 0 && term.length >= 3 && /\S$/.test(query); },
      weights: { fuzzy: 0.5, prefix: 0.3 },
      boostTerm: function (term) { return surface.has(term) ? SURFACE_BOOST : 1; },
      tokenize: function (t) { return [t]; },
      processTerm: function (t) { return t; },
    });

    // Group sections by page: the best section plus a share of the others, times the share of
    // the query's words the page matches, squared.
    var pages = new Map();
    hits.forEach(function (hit) {
      var doc = index.docs[hit.id];
      var entry = pages.get(doc.p);
      if (!entry) pages.set(doc.p, entry = { page: doc.p, hits: [], covered: new Set(), matched: new Set(), best: 0, rest: 0 });
      entry.hits.push(hit);
      hit.queryTerms.forEach(function (t) {
        (groupsOf.get(t) || []).forEach(function (i) {
          entry.matched.add(i);
          groups[i].covers.forEach(function (c) { entry.covered.add(c); });
        });
      });
      if (hit.score > entry.best) { entry.rest += entry.best; entry.best = hit.score; }
      else entry.rest += hit.score;
    });
    var ranked = Array.from(pages.values()).map(function (entry) {
      var coverage = entry.covered.size / base;
      entry.score = (entry.best + OTHER_SECTIONS * entry.rest) * coverage * coverage;
      return entry;
    }).sort(function (a, b) { return b.score - a.score; }).slice(0, MAX_PAGES);

    var items = ranked.map(function (entry) { return resultItem(entry, words, groups); });
    return { items: items, suggest: suggestion(ranked, words) };
  }

  // Material's result format: a page's documents, the first one's score setting which sections show.
  function resultItem(entry, words, groups) {
    var page = index.pages[entry.page];
    var marks = markers(entry.hits);
    var terms = {};  // for Material: each word typed, and whether this page matches it
    var at = 0;
    words.forEach(function (w) {
      if (!forms(w)) return;
      terms[w.toLowerCase()] = entry.covered.has(at);
      at += 1;
    });
    var sections = entry.hits.slice(0, 4).map(function (hit) {
      var doc = index.docs[hit.id];
      var first = doc.l.indexOf("#") < 0;
      return {
        location: doc.l,
        title: highlight(first ? page.t || page.n : doc.h, marks),
        text: highlight(teaser(doc.x, marks), marks),
        score: hit.score, terms: terms,
      };
    });
    // The best section leads (so its preview shows); the page itself heads the group.
    sections[0].score = entry.score;
    if (!sections.some(function (s) { return s.location === page.l; })) {
      sections.push({ location: page.l, title: highlight(page.t || page.n, marks), text: "", score: 0, terms: terms });
    }
    return sections;
  }

  function markers(hits) {
    var words = new Set();
    hits.forEach(function (hit) { hit.terms.forEach(function (t) { words.add(t); }); });
    return words;
  }

  function escapeHtml(text) {
    return text.replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // Escape the text and mark each word whose stem is one the query matched.
  function highlight(text, marks) {
    var out = "", at = 0, m;
    WORD.lastIndex = 0;
    while ((m = WORD.exec(text))) {
      out += escapeHtml(text.slice(at, m.index));
      var f = forms(m[0]);
      out += f && f.some(function (t) { return marks.has(t); }) ? "<mark>" + escapeHtml(m[0]) + "</mark>" : escapeHtml(m[0]);
      at = m.index + m[0].length;
    }
    return out + escapeHtml(text.slice(at));
  }

  // About 200 characters of the section, starting a little before the first matched word.
  function teaser(text, marks) {
    var m, start = 0;
    WORD.lastIndex = 0;
    while ((m = WORD.exec(text))) {
      var f = forms(m[0]);
      if (f && f.some(function (t) { return marks.has(t); })) { start = m.index; break; }
    }
    var from = Math.max(0, text.lastIndexOf(" ", Math.max(0, start - 60)));
    var snippet = text.slice(from, from + 220).trim();
    return (from > 0 ? "… " : "") + snippet + (from + 220 < text.length ? " …" : "");
  }

  // Material completes the last word typed with the last suggestion, when it starts with it.
  function suggestion(ranked, words) {
    if (!ranked.length || !words.length) return [];
    var typed = words[words.length - 1].toLowerCase();
    var page = index.pages[ranked[0].page];
    var found = tokenize(page.n + " " + page.t + " " + page.a.join(" ")).find(function (w) {
      return w.toLowerCase().indexOf(typed) === 0 && w.length > typed.length;
    });
    return found ? [found.toLowerCase()] : [];
  }

  self.addEventListener("message", function (ev) {
    var message = ev.data;
    if (message.type === SETUP) {
      postMessage({ type: READY });
    } else if (message.type === QUERY) {
      load().then(function () {
        postMessage({ type: RESULT, data: search(message.data) });
      }, function (err) {
        console.warn("search could not load", err);
        postMessage({ type: RESULT, data: { items: [] } });
      });
    }
  });
})();
