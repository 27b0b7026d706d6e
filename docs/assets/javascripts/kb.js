// Loads KaTeX and Mermaid from the site's own assets, only on pages that contain math or diagrams.
// Material's instant navigation swaps pages without a reload, so this runs on every page change.
(function () {
  var scriptUrl = document.currentScript.src;
  var vendor = new URL("../vendor/", scriptUrl).href;
  var base = vendor + "katex/";
  var loading = null;
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

  function katexReady() {
    if (!loading) {
      loading = Promise.all([
        load("link", { rel: "stylesheet", href: base + "katex.min.css" }),
        load("script", { src: base + "katex.min.js" }).then(function () {
          return load("script", { src: base + "contrib/auto-render.min.js" });
        }),
      ]);
    }
    return loading;
  }

  var MARKDOWN_MATH = [
    { left: "\\(", right: "\\)", display: false },
    { left: "\\[", right: "\\]", display: true },
  ];
  // Notebook cells keep TeX as typed in Jupyter.
  var NOTEBOOK_MATH = [
    { left: "$$", right: "$$", display: true },
    { left: "$", right: "$", display: false },
  ].concat(MARKDOWN_MATH);

  function renderMath(root) {
    root = root || document;
    var pages = root.querySelectorAll(".arithmatex"), cells = root.querySelectorAll(".jp-RenderedMarkdown");
    if (!pages.length && !cells.length) return;
    katexReady().then(function () {
      // Render each block once, even if this runs twice for one page (load and document$).
      root.querySelectorAll(".arithmatex").forEach(function (el) {
        if (el.querySelector(".katex")) return;
        renderMathInElement(el, { delimiters: MARKDOWN_MATH, throwOnError: true });
      });
      root.querySelectorAll(".jp-RenderedMarkdown:not([data-kb-math])").forEach(function (el) {
        el.setAttribute("data-kb-math", "");
        renderMathInElement(el, { delimiters: NOTEBOOK_MATH, throwOnError: true });
      });
    });
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
      window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: dark ? "dark" : "default" });
      return window.mermaid.run({ nodes: blocks });
    });
  }

  var practiceLoading = null;

  function startPractice() {
    if (!document.getElementById("kb-practice")) return;
    if (window.kbPractice) return window.kbPractice.init();
    if (!practiceLoading) practiceLoading = load("script", { src: new URL("practice.js", scriptUrl).href });
  }

  function renderPage() {
    renderMath();
    renderDiagrams();
    startPractice();
  }

  window.kbRenderMath = renderMath;

  // document$ fires on every instant-navigation page change, but not on file:// (the offline copy),
  // so the first page is also rendered on load.
  if (window.document$) window.document$.subscribe(renderPage);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderPage);
  } else {
    renderPage();
  }
})();
