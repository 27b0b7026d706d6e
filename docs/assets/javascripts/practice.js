// The Practice page: self-quiz with a Leitner schedule kept in localStorage, and an interview mode.
// Loaded by kb.js only on the page that has #kb-practice; the questions come from the JSON the
// site build embeds in that page (#kb-practice-data), made from each page's "In 30 seconds".
(function () {
  "use strict";

  var STORE = "kb-practice/v1";
  var MINUTE = 60 * 1000, DAY = 24 * 60 * MINUTE;
  // Leitner boxes 1..5: how long a card rests after landing in each box.
  var REST = { 1: 10 * MINUTE, 2: DAY, 3: 3 * DAY, 4: 7 * DAY, 5: 21 * DAY };
  var INTERVIEW_LENGTH = 5, INTERVIEW_BUDGET_S = 120;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }

  function save(state) { localStorage.setItem(STORE, JSON.stringify(state)); }

  // Grade a card: again -> box 1; hard -> same box, half the rest; good -> next box; easy -> two up.
  function grade(entry, g, now) {
    var box = entry ? entry.box : 1;
    var rest;
    if (g === "again") { box = 1; rest = REST[1]; }
    else if (g === "hard") { rest = Math.max(REST[1], REST[box] / 2); }
    else if (g === "good") { box = Math.min(5, box + 1); rest = REST[box]; }
    else { box = Math.min(5, box + 2); rest = REST[box]; }
    return { box: box, due: now + rest, reviews: (entry ? entry.reviews : 0) + 1 };
  }

  // Next card: the most overdue card, else the first new one, else (nothing due) the soonest due.
  function pick(cards, progress, now) {
    var due = cards.filter(function (c) { var p = progress[c.url]; return p && p.due <= now; });
    if (due.length) return due.sort(function (a, b) { return progress[a.url].due - progress[b.url].due; })[0];
    var fresh = cards.filter(function (c) { return !progress[c.url]; });
    if (fresh.length) return fresh[0];
    return cards.slice().sort(function (a, b) { return progress[a.url].due - progress[b.url].due; })[0] || null;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "html") node.innerHTML = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function options(select, values, label) {
    select.appendChild(el("option", { value: "", text: label }));
    values.forEach(function (v) { select.appendChild(el("option", { value: v[0], text: v[1] })); });
  }

  function unique(list) { return list.filter(function (v, i) { return list.indexOf(v) === i; }); }

  function start(root, data) {
    var cards = data.cards;
    var state = load();
    state.progress = state.progress || {};
    state.filters = state.filters || { section: "", tag: "", difficulty: "" };
    var timer = null;

    var section = el("select", { "aria-label": "Section", "data-filter": "section" });
    options(section, unique(cards.map(function (c) { return c.section; })).map(function (s) {
      return [s, cards.filter(function (c) { return c.section === s; })[0].section_title];
    }), "All sections");
    var tag = el("select", { "aria-label": "Tag", "data-filter": "tag" });
    options(tag, unique([].concat.apply([], cards.map(function (c) { return c.tags; }))).sort()
      .map(function (t) { return [t, t]; }), "All tags");
    var difficulty = el("select", { "aria-label": "Difficulty", "data-filter": "difficulty" });
    options(difficulty, ["junior", "middle", "senior"].map(function (d) { return [d, d]; }), "Any difficulty");
    [section, tag, difficulty].forEach(function (s) {
      s.value = state.filters[s.getAttribute("data-filter")] || "";
      s.addEventListener("change", function () {
        state.filters[s.getAttribute("data-filter")] = s.value;
        save(state);
        showNext();
      });
    });

    var stage = el("div", { class: "kb-practice__stage" });
    var progressView = el("div", { class: "kb-practice__progress" });
    var interviewButton = el("button", { class: "md-button", type: "button", text: "Interview mode: " +
      INTERVIEW_LENGTH + " random questions, timed", onclick: startInterview });
    root.innerHTML = "";
    root.appendChild(el("div", { class: "kb-practice__filters" }, [section, tag, difficulty, interviewButton]));
    root.appendChild(stage);
    root.appendChild(progressView);

    function filtered() {
      return cards.filter(function (c) {
        return (!state.filters.section || c.section === state.filters.section) &&
          (!state.filters.tag || c.tags.indexOf(state.filters.tag) >= 0) &&
          (!state.filters.difficulty || c.difficulty === state.filters.difficulty);
      });
    }

    function header(card) {
      return el("p", { class: "kb-practice__meta" }, [
        el("span", { class: "kb-badge kb-badge--" + card.difficulty, text: card.difficulty }),
        el("span", { text: card.section_title }),
      ]);
    }

    function answerBlock(card) {
      var block = el("div", { class: "kb-practice__answer", html: card.answer_html });
      block.appendChild(el("p", {}, [el("a", { href: card.href, class: "kb-practice__link", text: "Read the full answer: " + card.name })]));
      if (window.kbMathStyles) window.kbMathStyles(block);
      return block;
    }

    function showNext(focusReveal) {
      stopTimer();
      var pool = filtered();
      var card = pick(pool, state.progress, Date.now());
      stage.innerHTML = "";
      if (!card) {
        stage.appendChild(el("p", { class: "kb-practice__empty", text: "No question matches these filters." }));
        renderProgress();
        return;
      }
      var entry = state.progress[card.url];
      var reveal = el("button", { class: "md-button md-button--primary", type: "button", text: "Show answer" });
      var grades = el("div", { class: "kb-practice__grades", hidden: "hidden" },
        ["again", "hard", "good", "easy"].map(function (g) {
          return el("button", { class: "md-button", type: "button", "data-grade": g, text: g[0].toUpperCase() + g.slice(1),
            onclick: function () {
              state.progress[card.url] = grade(state.progress[card.url], g, Date.now());
              save(state);
              showNext(true);
            } });
        }));
      var slot = el("div");
      reveal.addEventListener("click", function () {
        reveal.hidden = true;
        slot.appendChild(answerBlock(card));
        grades.hidden = false;
        grades.querySelector("button").focus();  // keyboard users go on to grading
      });
      stage.appendChild(el("div", { class: "kb-practice__card", "data-url": card.url }, [
        header(card),
        el("p", { class: "kb-practice__question", text: card.question }),
        el("p", { class: "kb-practice__status", text: entry ? "Box " + entry.box + " of 5 · reviewed " + entry.reviews + "×" : "New question" }),
        reveal, slot, grades,
      ]));
      renderProgress();
      if (focusReveal) reveal.focus();  // after grading from the keyboard, the next card is one key away
    }

    function renderProgress() {
      var rows = unique(cards.map(function (c) { return c.section; })).map(function (s) {
        var mine = cards.filter(function (c) { return c.section === s; });
        var count = function (test) { return mine.filter(function (c) { return test(state.progress[c.url]); }).length; };
        return el("tr", { "data-section": s }, [
          el("td", { text: mine[0].section_title }),
          el("td", { text: String(count(function (p) { return !p; })) }),
          el("td", { text: String(count(function (p) { return p && p.box <= 2; })) }),
          el("td", { text: String(count(function (p) { return p && p.box >= 3; })) }),
        ]);
      });
      progressView.innerHTML = "";
      progressView.appendChild(el("h2", { text: "Your progress" }));
      // Focusable and named: the table scrolls sideways on a phone (axe: scrollable-region-focusable).
      progressView.appendChild(el("table", { tabindex: "0", "aria-label": "Your progress by section" }, [
        el("thead", {}, [el("tr", {}, ["Section", "New", "Learning (box 1–2)", "Known (box 3–5)"].map(function (h) { return el("th", { text: h }); }))]),
        el("tbody", {}, rows),
      ]));
      progressView.appendChild(el("button", { class: "md-button", type: "button", text: "Reset progress",
        onclick: function () {
          if (window.confirm("Forget every grade on this device?")) {
            state.progress = {};
            save(state);
            showNext();
          }
        } }));
    }

    function stopTimer() { if (timer) { clearInterval(timer); timer = null; } }

    function startInterview() {
      var pool = filtered().slice();
      for (var i = pool.length - 1; i > 0; i--) {  // Fisher-Yates shuffle
        var j = Math.floor(Math.random() * (i + 1)), t = pool[i]; pool[i] = pool[j]; pool[j] = t;
      }
      var picked = pool.slice(0, INTERVIEW_LENGTH), times = [], index = 0;
      if (!picked.length) return;

      function ask() {
        stopTimer();
        var card = picked[index], started = Date.now();
        var clock = el("span", { class: "kb-practice__timer", text: "0:00" });
        var tick = function () {
          var s = Math.floor((Date.now() - started) / 1000);
          clock.textContent = Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
          clock.classList.toggle("kb-practice__timer--over", s > INTERVIEW_BUDGET_S);
        };
        timer = setInterval(tick, 250);
        var next = el("button", { class: "md-button md-button--primary", type: "button",
          text: index + 1 < picked.length ? "Next question" : "Finish",
          onclick: function () {
            times.push(Math.round((Date.now() - started) / 1000));
            index += 1;
            if (index < picked.length) ask(); else review();
          } });
        stage.innerHTML = "";
        stage.appendChild(el("div", { class: "kb-practice__card kb-practice__card--interview", "data-url": card.url }, [
          el("p", { class: "kb-practice__meta" }, [
            el("span", { class: "kb-practice__count", text: "Question " + (index + 1) + " of " + picked.length }),
            el("span", { text: "Answer out loud; aim for " + INTERVIEW_BUDGET_S / 60 + " minutes." }), clock,
          ]),
          el("p", { class: "kb-practice__question", text: card.question }),
          next,
        ]));
      }

      function review() {
        stopTimer();
        stage.innerHTML = "";
        stage.appendChild(el("div", { class: "kb-practice__review" }, [
          el("h2", { text: "Interview over: review the full answers" }),
          el("ol", {}, picked.map(function (card, k) {
            return el("li", {}, [el("a", { href: card.href, text: card.question }), el("span", { text: " (" + times[k] + " s)" })]);
          })),
          el("button", { class: "md-button", type: "button", text: "Back to practice", onclick: showNext }),
        ]));
      }

      ask();
    }

    showNext();
  }

  function init() {
    var root = document.getElementById("kb-practice");
    var source = document.getElementById("kb-practice-data");
    if (root && source) start(root, JSON.parse(source.textContent));
  }

  window.kbPractice = { init: init, grade: grade, pick: pick };
  init();
})();
