// The site's own page script. On every page change (Material's instant navigation swaps pages without a
// reload) it loads KaTeX's stylesheet and Mermaid from the site's own assets, only on pages that contain
// math or diagrams, starts practice mode, and applies accessibility fixes. Once per load it runs the
// header's palette toggle.
(function () {
  var scriptUrl = document.currentScript.src;
  var vendor = new URL("../vendor/", scriptUrl).href;
  var base = vendor + "katex/";
  var mermaidLoading = null;

  function load(tag, attrs) {
    return new Promise(function (resolve, reject) {
      var el = document.createElement(tag);
      Object.keys(attrs).forEach(function (k) { el[k] = attrs[k]; });
      el.onload = resolve;
      el.onerror = function () { reject(new Error("could not load " + (attrs.src || attrs.href))); };
      document.head.appendChild(el);
    });
  }

  // Math is typeset at build time (vault/math.py); a page with math needs KaTeX's stylesheet, which
  // the page's head links, except after instant navigation from a page without math, or for
  // practice answers shown later.
  function mathStyles(root) {
    if (document.getElementById("kb-katex-css") || !(root || document).querySelector(".katex")) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.id = "kb-katex-css";
    link.href = base + "katex.min.css";
    document.head.appendChild(link);
  }

  // Mermaid is a megabyte of script that keeps a phone's main thread busy for most of a second: it
  // loads when the first diagram comes within a screen of the viewport, not with the page. Then every
  // diagram of the page is drawn, so that none is blank when the reader scrolls on.
  var nearObserver = null;

  function renderDiagramsWhenNear() {
    if (nearObserver) nearObserver.disconnect();
    var blocks = document.querySelectorAll("div.kb-mermaid:not([data-processed])");
    if (!blocks.length) return;
    if (!("IntersectionObserver" in window)) return renderDiagrams();
    nearObserver = new IntersectionObserver(function (entries) {
      if (!entries.some(function (e) { return e.isIntersecting; })) return;
      nearObserver.disconnect();
      renderDiagrams();
    }, { rootMargin: "100% 0px" });
    blocks.forEach(function (el) { nearObserver.observe(el); });
  }

  function renderDiagrams() {
    var blocks = document.querySelectorAll("div.kb-mermaid:not([data-processed])");
    if (!blocks.length) return;
    if (!mermaidLoading) {
      mermaidLoading = load("script", { src: vendor + "mermaid/mermaid.min.js" }).then(function () {
        window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
      });
    }
    mermaidLoading.then(function () {
      blocks = [].filter.call(blocks, function (el) { return !el.hasAttribute("data-processed"); });
      if (!blocks.length) return;
      var dark = document.body.getAttribute("data-md-color-scheme") === "slate";
      // In the dark theme, edge labels get a darker box than Mermaid's own, for 4.5:1 contrast.
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: dark ? "dark" : "default",
        themeVariables: dark ? { edgeLabelBackground: "#3a3a3a" } : {} });
      return window.mermaid.run({ nodes: blocks });
    });
  }

  var practiceLoading = null;

  function startPractice() {
    if (!document.getElementById("kb-practice")) return;
    if (window.kbPractice) return window.kbPractice.init();
    if (!practiceLoading) practiceLoading = load("script", { src: new URL("practice.js", scriptUrl).href });
  }

  // Accessibility fixes that need the rendered page: scrollable blocks without focusable content
  // become focusable (keyboard users can scroll them), and navigation landmarks get the name of the
  // label that heads them, so that each is told apart.
  function accessible() {
    document.querySelectorAll(".highlight-ipynb, .jp-OutputArea-output pre, .md-typeset__scrollwrap, div.arithmatex").forEach(function (el) {
      if (!el.hasAttribute("tabindex") && el.scrollWidth > el.clientWidth) el.setAttribute("tabindex", "0");
    });
    document.querySelectorAll("nav.md-tags:not([aria-label])").forEach(function (nav) { nav.setAttribute("aria-label", "Tags"); });
    document.querySelectorAll("nav.md-code__nav:not([aria-label])").forEach(function (nav, i) {
      nav.setAttribute("aria-label", "Code block " + (i + 1));
    });
    var used = {};
    // (With navigation.indexes a section's label holds only an icon; its name is the index link's.)
    document.querySelectorAll("nav[aria-labelledby]").forEach(function (nav) {
      var label = document.getElementById(nav.getAttribute("aria-labelledby"));
      if (!label || label.textContent.trim()) return;
      var link = nav.parentElement && nav.parentElement.querySelector(".md-nav__link");
      var name = link && link.textContent.trim();
      if (!name) return;
      used[name] = (used[name] || 0) + 1;
      nav.removeAttribute("aria-labelledby");
      nav.setAttribute("aria-label", used[name] > 1 ? name + " (" + used[name] + ")" : name);
    });
    // A page's table of contents shows twice (in the drawer and in the sidebar), so its nested
    // lists carry the same names: number the repeats.
    var named = {};
    document.querySelectorAll("nav[aria-label]").forEach(function (nav) {
      var name = nav.getAttribute("aria-label").replace(/ \(\d+\)$/, "");
      named[name] = (named[name] || 0) + 1;
      if (named[name] > 1) nav.setAttribute("aria-label", name + " (" + named[name] + ")");
    });
  }

  // Material adds code-block buttons after load: name them once the page has settled.
  var pending = false;
  var observer = new MutationObserver(function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; accessible(); });
  });
  observer.observe(document.documentElement, { childList: true, subtree: true });

  function renderPage() {
    accessible();
    mathStyles();
    renderDiagramsWhenNear();
    startPractice();
  }

  window.kbMathStyles = mathStyles;

  // The header's palette toggle (overrides/partials/palette.html says why Material's code does not
  // run it). The choice is kept as Material keeps it, so Material's early script in the page's
  // <body> applies it before the first paint of the next page. <body> is only written to when a
  // value changes: each change restyles the whole page.
  function palette() {
    var form = document.querySelector("form[data-kb-palette]");
    if (!form) return;
    var inputs = [].slice.call(form.querySelectorAll("input"));
    function apply(index) {
      var input = inputs[index];
      var color = {};
      var body = document.body;
      ["media", "scheme", "primary", "accent"].forEach(function (key) {
        color[key] = input.getAttribute("data-md-color-" + key);
        if (key === "media" || body.getAttribute("data-md-color-" + key) === color[key]) return;
        // Material's stylesheet turns transitions off while this is set: the colours change at once,
        // not over 125 ms. It is taken off after the next frame has been styled.
        if (!body.hasAttribute("data-md-color-switching")) {
          body.setAttribute("data-md-color-switching", "");
          requestAnimationFrame(function () {
            requestAnimationFrame(function () { body.removeAttribute("data-md-color-switching"); });
          });
        }
        body.setAttribute("data-md-color-" + key, color[key]);
      });
      input.checked = true;
      inputs.forEach(function (other, i) {
        var label = other.nextElementSibling;
        if (label && label.tagName === "LABEL") label.hidden = i !== index;
      });
      window.__md_set("__palette", { index: index, color: color });
    }
    var stored = null;
    try { stored = window.__md_get("__palette"); } catch (e) { /* storage blocked or unreadable */ }
    var index = stored && typeof stored.index === "number" ? stored.index : inputs.findIndex(function (input) {
      return matchMedia(input.getAttribute("data-md-color-media")).matches;
    });
    apply(Math.max(0, Math.min(index, inputs.length - 1)));
    inputs.forEach(function (input, i) { input.addEventListener("change", function () { apply(i); }); });
    form.addEventListener("keydown", function (event) {  // Enter on the focused toggle switches, as in Material
      if (event.key !== "Enter") return;
      event.preventDefault();
      var next = inputs[(inputs.indexOf(document.activeElement) + 1) % inputs.length];
      next.click();
      next.focus();
    });
  }
  palette();

  // document$ fires on every instant-navigation page change, but not on file:// (the offline copy),
  // so the first page is also rendered on load.
  if (window.document$) window.document$.subscribe(renderPage);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderPage);
  } else {
    renderPage();
  }
})();
