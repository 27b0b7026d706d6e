// Loads KaTeX from the site's own assets, only on pages that contain math.
// Material's instant navigation swaps pages without a reload, so this runs on every page change.
(function () {
  var base = new URL("../vendor/katex/", document.currentScript.src).href;
  var loading = null;

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

  function renderMath() {
    var blocks = document.querySelectorAll(".arithmatex");
    if (!blocks.length) return;
    katexReady().then(function () {
      blocks.forEach(function (el) {
        renderMathInElement(el, {
          delimiters: [
            { left: "\\(", right: "\\)", display: false },
            { left: "\\[", right: "\\]", display: true },
          ],
          throwOnError: true,
        });
      });
    });
  }

  if (window.document$) {
    window.document$.subscribe(renderMath);
  } else {
    document.addEventListener("DOMContentLoaded", renderMath);
  }
})();
