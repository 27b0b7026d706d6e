// Runs the site's own search worker (assets/javascripts/search-worker.js of a built site) under Node,
// as the browser would: the same messages, the same index. Reads [[query, ...], ...] as JSON on
// stdin; prints, as JSON, the distinct result pages of each query, best first.
// Usage: node tests/search_rank.js SITE_DIR < queries.json
"use strict";
const fs = require("fs"), path = require("path"), vm = require("vm");

const site = process.argv[2];
const worker = path.join(site, "assets", "javascripts", "search-worker.js");
const context = { console, URL, Set, Map, Promise };
context.self = context;
context.location = { href: "file://" + worker };
context.importScripts = (url) => vm.runInContext(fs.readFileSync(new URL(url).pathname, "utf8"), context);
let onMessage = null, answer = null;
context.addEventListener = (type, listener) => { onMessage = listener; };
context.postMessage = (message) => { if (message.type === 3 && answer) answer(message.data); };  // RESULT
vm.createContext(context);
vm.runInContext(fs.readFileSync(worker, "utf8"), context);

const QUERY = 2;
function ask(query) {
  return new Promise((resolve) => { answer = resolve; onMessage({ data: { type: QUERY, data: query } }); });
}

(async () => {
  const queries = JSON.parse(fs.readFileSync(0, "utf8"));
  const ranked = [];
  for (const query of queries) {
    const result = await ask(query);
    ranked.push([...new Set(result.items.map((item) => item[0].location.split(/[?#]/)[0]))]);
  }
  process.stdout.write(JSON.stringify(ranked));
})();
