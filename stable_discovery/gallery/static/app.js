// stable-discovery gallery: screen images, mark favourites, look at what wins.
// Plain JavaScript, no build step. Every mark is POSTed to /api/rate at once; the
// experiment, filters and view live in the URL's hash so that a reload comes back here.
"use strict";

(() => {
  const PAGE = 200;
  const $ = (id) => document.getElementById(id);

  /** Make an element: h("div", {class: "x", onclick: f}, child, "text", ...). */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  const state = {
    experiments: [],
    exp: null,
    facets: [],
    filters: { fav: "", rejected: "", stars: "", values: new Set() },
    items: [],
    total: null,
    next: null,
    done: false,
    loading: null,
    gen: 0,
    sel: -1,
    view: "grid",
    viewerOpen: false,
    compare: [],
    minStars: "",
    queue: Promise.resolve(),
    restoreIndex: null,
    readOnly: false,
  };
  window.sdpPending = 0; // requests in flight: tests wait for 0

  // ---------------------------------------------------------------------------------
  // talking to the server

  async function api(path, options) {
    window.sdpPending += 1;
    try {
      const init = { headers: {} };
      if (options && options.body !== undefined) {
        init.method = "POST";
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(options.body);
      }
      const response = await fetch(path, init);
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
        error.status = response.status;
        throw error;
      }
      return data;
    } finally {
      window.sdpPending -= 1;
    }
  }

  let toastTimer = null;
  function toast(message, kind) {
    const el = $("toast");
    el.textContent = message;
    el.className = "toast" + (kind === "info" ? " info" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => el.classList.add("hidden"), 4000);
  }

  const enc = encodeURIComponent;
  function currentExperiment() {
    return state.experiments.find((e) => e.name === state.exp) || null;
  }
  function version() {
    const e = currentExperiment();
    return e ? Math.round(e.created_at * 1000) : 0;
  }
  const thumbUrl = (item) => `/thumb/${enc(state.exp)}/${enc(item.file)}?v=${version()}`;
  const imageUrl = (item) => `/img/${enc(state.exp)}/${enc(item.file)}?v=${version()}`;

  // ---------------------------------------------------------------------------------
  // the URL hash: experiment, filters, view, selected image

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.exp = p.get("exp");
    state.filters.fav = p.get("fav") || "";
    state.filters.rejected = p.get("rejected") || "";
    state.filters.stars = p.get("stars") || "";
    state.filters.values = new Set(p.getAll("v"));
    state.view = p.get("view") === "stats" ? "stats" : "grid";
    state.minStars = p.get("min_stars") || "";
    const sel = p.get("sel");
    state.restoreIndex = sel !== null && /^\d+$/.test(sel) ? Number(sel) : null;
  }

  function writeHash() {
    const p = new URLSearchParams();
    if (state.exp) p.set("exp", state.exp);
    for (const key of ["fav", "rejected", "stars"]) if (state.filters[key]) p.set(key, state.filters[key]);
    for (const v of state.filters.values) p.append("v", v);
    if (state.view === "stats") p.set("view", "stats");
    if (state.minStars) p.set("min_stars", state.minStars);
    const item = state.items[state.sel];
    if (item) p.set("sel", item.index);
    history.replaceState(null, "", "#" + p.toString());
  }

  function filterQuery() {
    const p = new URLSearchParams({ experiment: state.exp });
    if (state.filters.fav) p.set("fav", state.filters.fav);
    if (state.filters.rejected) p.set("rejected", state.filters.rejected);
    if (state.filters.stars) p.set("stars", state.filters.stars);
    for (const v of state.filters.values) p.append("v", v);
    return p;
  }

  // ---------------------------------------------------------------------------------
  // experiments and filters (the side panel)

  async function loadExperiments() {
    const data = await api("/api/experiments");
    state.experiments = data.experiments;
    // sdp gallery --read-only (or a workspace that cannot be written): marks are not offered
    state.readOnly = Boolean(data.read_only);
    document.body.classList.toggle("read-only", state.readOnly);
    renderExperiments();
    renderSummary();
  }

  function renderExperiments() {
    const list = $("experiments");
    list.replaceChildren(
      ...state.experiments.map((e) =>
        h("li", { class: e.name === state.exp ? "active" : "", "data-name": e.name, title: e.template_path || "",
                  onclick: () => selectExperiment(e.name, false) },
          h("div", { class: "name" }, e.name),
          h("div", { class: "meta" },
            `${e.done.toLocaleString()} images`,
            e.favourites ? ` · ♥ ${e.favourites.toLocaleString()}` : "",
            e.rejected ? ` · ✕ ${e.rejected.toLocaleString()}` : "",
            ` · ${new Date(e.created_at * 1000).toLocaleDateString()}`)))
    );
    if (!state.experiments.length) {
      list.replaceChildren(h("li", { class: "muted" }, "No experiments yet: run sdp run first."));
    }
  }

  let refreshTimer = null;
  function refreshCountsSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => loadExperiments().catch(() => {}), 400);
  }

  function renderSummary() {
    const e = currentExperiment();
    const el = $("summary");
    if (!e) { el.textContent = ""; return; }
    const filtered = state.total !== null && state.total !== e.done;
    el.replaceChildren(
      h("b", {}, e.name), ` — ${e.done.toLocaleString()} images`,
      filtered ? ` · ${state.total.toLocaleString()} shown` : "",
      ` · ♥ ${e.favourites.toLocaleString()}`,
      e.rejected ? ` · ✕ ${e.rejected.toLocaleString()}` : "",
      ` · ${e.backend}, ${e.sampler} sampler, seed ${e.seed}`,
      state.readOnly ? " · read-only" : ""
    );
  }

  function renderFilterControls() {
    $("f-fav").value = state.filters.fav;
    $("f-rejected").value = state.filters.rejected;
    $("f-stars").value = state.filters.stars;
  }

  function renderFacets() {
    const box = $("facets");
    const groups = state.facets.map((facet) => {
      const picked = facet.values.filter((v) => state.filters.values.has(`${facet.name}:${v.choice}`)).length;
      const label = facet.kind === "setting" ? "@" + facet.name : facet.name;
      return h("details", { open: facet.values.length > 1 && (facet.values.length <= 12 || picked > 0), "data-name": facet.name },
        h("summary", {}, label, " ",
          h("span", { class: "kind" }, `${facet.values.length} value${facet.values.length === 1 ? "" : "s"}`),
          picked ? h("span", { class: "count" }, ` · ${picked} picked`) : ""),
        h("ul", {}, facet.values.map((v) => {
          const key = `${facet.name}:${v.choice}`;
          return h("li", {},
            h("label", { title: v.text },
              h("input", { type: "checkbox", "data-key": key, checked: state.filters.values.has(key),
                           onchange: (ev) => { toggleValue(key, ev.target.checked); ev.target.blur(); } }),
              h("span", { class: "text" }, v.text || "(empty)"),
              h("span", { class: "n" }, v.count.toLocaleString())));
        })));
    });
    box.replaceChildren(...groups);
  }

  function toggleValue(key, on) {
    if (on === undefined) on = !state.filters.values.has(key);
    if (on) state.filters.values.add(key); else state.filters.values.delete(key);
    renderFacets();
    reload();
  }

  function clearFilters() {
    state.filters = { fav: "", rejected: "", stars: "", values: new Set() };
    renderFilterControls();
    renderFacets();
    reload();
  }

  // ---------------------------------------------------------------------------------
  // the grid

  async function selectExperiment(name, keepFilters) {
    if (!keepFilters && name !== state.exp) {
      state.filters = { fav: "", rejected: "", stars: "", values: new Set() };
      state.restoreIndex = null;
    }
    state.exp = name;
    state.compare = [];
    renderCompareButton();
    renderExperiments();
    renderFilterControls();
    state.facets = [];
    renderFacets();
    if (!name) {
      const empty = $("empty");
      empty.textContent = "No experiments in this workspace yet: run  sdp run TEMPLATE.sdp  first, then reload.";
      empty.classList.remove("hidden");
      return;
    }
    try {
      const data = await api(`/api/facets?experiment=${enc(name)}`);
      if (state.exp !== name) return;
      state.facets = data.names;
      const known = new Set(state.facets.flatMap((f) => f.values.map((v) => `${f.name}:${v.choice}`)));
      for (const key of [...state.filters.values]) if (!known.has(key)) state.filters.values.delete(key);
      renderFacets();
    } catch (err) {
      toast(err.message);
    }
    await reload();
    if (state.view === "stats") loadStats();
  }

  async function reload() {
    state.gen += 1;
    state.items = [];
    state.total = null;
    state.next = null;
    state.done = false;
    state.loading = null;
    state.sel = -1;
    $("grid").replaceChildren();
    $("empty").classList.add("hidden");
    writeHash();
    await loadMore();
    if (state.gen && state.items.length) {
      let start = 0;
      if (state.restoreIndex !== null) {
        const found = state.items.findIndex((it) => it.index === state.restoreIndex);
        if (found >= 0) start = found;
        state.restoreIndex = null;
      }
      select(start, false);
    }
  }

  function loadMore() {
    if (state.loading) return state.loading;
    if (state.done || !state.exp) return Promise.resolve();
    const gen = state.gen;
    const query = filterQuery();
    query.set("limit", PAGE);
    if (state.next !== null) query.set("after", state.next);
    state.loading = api("/api/samples?" + query.toString())
      .then((data) => {
        if (gen !== state.gen) return;
        if (data.total !== undefined) state.total = data.total;
        const start = state.items.length;
        state.items.push(...data.items);
        const frag = document.createDocumentFragment();
        data.items.forEach((item, k) => frag.append(makeCard(item, start + k)));
        $("grid").append(frag);
        state.next = data.next;
        state.done = data.next === null;
        renderSummary();
        if (!state.items.length) {
          const empty = $("empty");
          empty.textContent = state.filters.values.size || state.filters.fav || state.filters.rejected || state.filters.stars
            ? "No image matches these filters." : "This experiment has no images yet.";
          empty.classList.remove("hidden");
        }
      })
      .catch((err) => { if (gen === state.gen) toast(err.message); })
      .finally(() => {
        if (gen === state.gen) {
          state.loading = null;
          requestAnimationFrame(fillViewport);
        }
      });
    return state.loading;
  }

  /** Keep loading while the end of the grid is on screen. */
  function fillViewport() {
    if (state.done || state.loading || state.view !== "grid") return;
    const rect = $("sentinel").getBoundingClientRect();
    if (rect.top < window.innerHeight + 800) loadMore();
  }

  function makeCard(item, i) {
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", { class: "star", "data-act": "star", "data-n": n, title: `${n} star${n > 1 ? "s" : ""} (${n})`, tabindex: -1 }, "★"));
    const card = h("div", { class: "card", role: "gridcell", "data-i": i, "data-index": item.index },
      h("img", { src: thumbUrl(item), alt: item.prompt, loading: "lazy", decoding: "async", draggable: "false" }),
      h("span", { class: "idx" }, "#" + item.index),
      h("span", { class: "badge fav", "aria-hidden": "true" }, "♥"),
      h("span", { class: "badge rej", "aria-hidden": "true" }, "✕"),
      h("span", { class: "cmp-tag" }, ""),
      h("div", { class: "bar" },
        h("span", { class: "stars" }, stars),
        h("button", { class: "fav", "data-act": "fav", title: "Favourite (f)", tabindex: -1 }, "♥"),
        h("button", { class: "rej", "data-act": "reject", title: "Reject (x)", tabindex: -1 }, "✕"),
        h("button", { class: "cmp", "data-act": "compare", title: "Compare (c)", tabindex: -1 }, "⇄")));
    card.title = item.prompt;
    paintCard(card, item);
    return card;
  }

  function paintCard(card, item) {
    card.classList.toggle("is-fav", item.favourite);
    card.classList.toggle("is-rej", item.rejected);
    card.classList.toggle("rated", !!item.stars || item.favourite || item.rejected);
    card.dataset.stars = item.stars || 0;
    card.querySelectorAll(".star").forEach((b) => b.classList.toggle("lit", Number(b.dataset.n) <= (item.stars || 0)));
    const slot = state.compare.indexOf(item.index);
    card.classList.toggle("is-cmp", slot >= 0);
    card.querySelector(".cmp-tag").textContent = slot === 0 ? "A" : slot === 1 ? "B" : "";
  }

  const cardAt = (i) => $("grid").children[i] || null;

  function repaint(i) {
    const card = cardAt(i);
    if (card) paintCard(card, state.items[i]);
    if (state.viewerOpen && i === state.sel) renderViewerActions();
    if (!$("compare").classList.contains("hidden")) renderCompareActions();
  }

  function columns() {
    const cols = getComputedStyle($("grid")).gridTemplateColumns.split(" ").filter(Boolean).length;
    return Math.max(1, cols);
  }

  function select(i, scroll = true) {
    if (!state.items.length) return;
    i = Math.max(0, Math.min(i, state.items.length - 1));
    const old = cardAt(state.sel);
    if (old) old.classList.remove("sel");
    state.sel = i;
    const card = cardAt(i);
    if (card) {
      card.classList.add("sel");
      if (scroll) card.scrollIntoView({ block: "nearest" });
    }
    writeHash();
    if (!state.done && i >= state.items.length - columns() * 3) loadMore();
    if (state.viewerOpen) openViewer();
  }

  async function move(step) {
    let target = state.sel + step;
    if (target >= state.items.length && !state.done) {
      await loadMore();
    }
    if (target < 0) target = step < -1 && state.sel > 0 ? state.sel % columns() : 0;
    if (target >= state.items.length) target = step > 1 ? state.sel : state.items.length - 1;
    select(target);
  }

  // ---------------------------------------------------------------------------------
  // marks: optimistic, then confirmed by the server, one request after another

  function rate(i, change) {
    const item = state.items[i];
    if (!item) return Promise.resolve();
    if (state.readOnly) {
      toast("this gallery is read-only: marks cannot be changed here", "info");
      return Promise.resolve();
    }
    Object.assign(item, change);
    repaint(i);
    const body = { experiment: state.exp, index: item.index, ...change };
    const exp = state.exp;
    state.queue = state.queue
      .then(() => api("/api/rate", { body }))
      .then((data) => {
        if (state.exp === exp && state.items[i] === item) {
          Object.assign(item, data.rating);
          repaint(i);
        }
        refreshCountsSoon();
      })
      .catch((err) => {
        toast(`not saved: ${err.message}`);
        if (state.exp === exp) refreshItem(i, item);
      });
    return state.queue;
  }

  async function refreshItem(i, item) {
    try {
      const record = await api(`/api/record?experiment=${enc(state.exp)}&index=${item.index}`);
      Object.assign(item, record.rating);
      if (state.items[i] === item) repaint(i);
    } catch (e) { /* the toast already said it */ }
  }

  const toggleFavourite = (i) => state.items[i] && rate(i, { favourite: !state.items[i].favourite });
  const toggleReject = (i) => state.items[i] && rate(i, { rejected: !state.items[i].rejected });
  function setStars(i, n) {
    const item = state.items[i];
    if (!item) return;
    rate(i, { stars: n === 0 || item.stars === n ? null : n });
  }

  // ---------------------------------------------------------------------------------
  // the viewer

  let recordToken = 0;
  async function openViewer() {
    const item = state.items[state.sel];
    if (!item) return;
    state.viewerOpen = true;
    $("viewer").classList.remove("hidden");
    $("v-img").src = imageUrl(item);
    $("v-img").alt = item.prompt;
    $("v-title").textContent = `#${item.index}`;
    renderViewerActions();
    const token = ++recordToken;
    $("v-record").replaceChildren(h("p", { class: "muted" }, "loading…"));
    try {
      const record = await api(`/api/record?experiment=${enc(state.exp)}&index=${item.index}`);
      if (token !== recordToken) return;
      $("v-record").replaceChildren(...recordView(record, null));
      const next = state.items[state.sel + 1];
      if (next) new Image().src = imageUrl(next); // the next image is likely wanted soon
    } catch (err) {
      if (token === recordToken) $("v-record").replaceChildren(h("p", { class: "muted" }, err.message));
    }
  }

  function closeViewer() {
    state.viewerOpen = false;
    $("viewer").classList.add("hidden");
    $("v-img").removeAttribute("src");
    const card = cardAt(state.sel);
    if (card) card.scrollIntoView({ block: "nearest" });
  }

  function actionButtons(i) {
    const item = state.items[i];
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", { class: "mark star" + (n <= (item.stars || 0) ? " lit" : ""), title: `${n} star${n > 1 ? "s" : ""} (${n})`,
                    "data-act": "star", "data-n": n, onclick: () => setStars(i, n) }, "★"));
    return [
      h("span", { class: "group" },
        h("button", { class: "mark fav" + (item.favourite ? " lit" : ""), "data-act": "fav", title: "Favourite (f)",
                      onclick: () => toggleFavourite(i) }, "♥"),
        h("span", { class: "label" }, item.favourite ? "favourite" : "favourite?")),
      h("span", { class: "group" }, stars),
      h("span", { class: "group" },
        h("button", { class: "mark rej" + (item.rejected ? " lit" : ""), "data-act": "reject", title: "Reject (x)",
                      onclick: () => toggleReject(i) }, "✕"),
        h("span", { class: "label" }, item.rejected ? "rejected" : "reject")),
    ];
  }

  function renderViewerActions() {
    const i = state.sel;
    if (!state.items[i]) return;
    $("v-actions").replaceChildren(...actionButtons(i),
      h("button", { class: "btn", "data-act": "compare", title: "Compare (c)", onclick: () => markCompare(i) },
        state.compare.includes(state.items[i].index) ? "⇄ marked" : "⇄ compare"));
  }

  /** The record as DOM: prompt, negative, seed, trace and settings tables. */
  function recordView(record, other) {
    const differs = (a, b) => other !== null && JSON.stringify(a) !== JSON.stringify(b);
    const traceRows = Object.entries(record.trace).map(([name, chosen]) => {
      const otherChosen = other ? other.trace[name] : undefined;
      const key = `${name}:${chosen.index}`;
      return h("tr", { class: differs(chosen, otherChosen) ? "diff" : "" },
        h("td", {}, name),
        h("td", {},
          h("span", { class: "val", title: "Filter by this value", onclick: () => filterBy(key) }, chosen.text || "(empty)"),
          h("span", { class: "choice" }, `#${chosen.index}`)));
    });
    const settingRows = Object.entries(record.settings).map(([name, value]) =>
      h("tr", { class: other && differs(value, other.settings[name]) ? "diff" : "" },
        h("td", {}, name), h("td", {}, typeof value === "object" ? JSON.stringify(value) : String(value))));
    return [
      h("h3", {}, "Prompt"), h("div", { class: "prompt" + (differs(record.prompt, other && other.prompt) ? " diff" : "") }, record.prompt || "(empty)"),
      h("h3", {}, "Negative"), h("div", { class: "prompt" }, record.negative || "(none)"),
      h("h3", {}, "Trace"), h("table", {}, h("tbody", {}, traceRows)),
      h("h3", {}, "Generation"),
      h("table", {}, h("tbody", {},
        h("tr", { class: differs(record.seed, other && other.seed) ? "diff" : "" }, h("td", {}, "seed"), h("td", {}, String(record.seed))),
        settingRows,
        h("tr", {}, h("td", {}, "file"), h("td", {}, record.file || "")))),
    ];
  }

  function filterBy(key) {
    closeViewer();
    closeCompare();
    state.filters.values.add(key);
    if (state.view !== "grid") setView("grid");
    renderFacets();
    reload();
  }

  // ---------------------------------------------------------------------------------
  // compare two images

  function renderCompareButton() {
    const btn = $("compare-btn");
    btn.textContent = `Compare ${state.compare.length}/2`;
    btn.disabled = state.compare.length !== 2;
    btn.classList.toggle("on", state.compare.length > 0);
  }

  function markCompare(i) {
    const item = state.items[i];
    if (!item) return;
    const at = state.compare.indexOf(item.index);
    if (at >= 0) state.compare.splice(at, 1);
    else {
      state.compare.push(item.index);
      if (state.compare.length > 2) state.compare.shift();
    }
    state.items.forEach((it, k) => { if (cardAt(k)) paintCard(cardAt(k), it); });
    renderCompareButton();
    if (state.viewerOpen) renderViewerActions();
    if (state.compare.length === 2 && at < 0) openCompare();
  }

  const itemPos = (index) => state.items.findIndex((it) => it.index === index);

  async function openCompare() {
    if (state.compare.length !== 2) return;
    if (state.viewerOpen) closeViewer();
    const [a, b] = state.compare;
    $("compare").classList.remove("hidden");
    $("c-body").replaceChildren(h("p", { class: "muted" }, "loading…"));
    try {
      const [ra, rb] = await Promise.all([a, b].map((idx) => api(`/api/record?experiment=${enc(state.exp)}&index=${idx}`)));
      $("c-body").replaceChildren(comparePane(ra, rb, "A"), comparePane(rb, ra, "B"));
      renderCompareActions();
    } catch (err) {
      $("c-body").replaceChildren(h("p", { class: "muted" }, err.message));
    }
  }

  function comparePane(record, other, tag) {
    const pos = itemPos(record.index);
    const item = state.items[pos] || { file: record.file, prompt: record.prompt };
    return h("div", { class: "compare-pane", "data-index": record.index },
      h("div", { class: "viewer-head" }, h("h2", {}, `${tag} · #${record.index}`)),
      h("div", { class: "pic" }, h("img", { src: imageUrl(item), alt: record.prompt })),
      h("div", { class: "actions", "data-pos": pos }),
      h("div", { class: "record" }, recordView(record, other)));
  }

  function renderCompareActions() {
    document.querySelectorAll("#c-body .actions").forEach((box) => {
      const pos = Number(box.dataset.pos);
      if (pos >= 0 && state.items[pos]) box.replaceChildren(...actionButtons(pos));
    });
  }

  function closeCompare() {
    if ($("compare").classList.contains("hidden")) return;
    $("compare").classList.add("hidden");
    $("c-body").replaceChildren();
    state.compare = [];
    state.items.forEach((it, k) => { if (cardAt(k)) paintCard(cardAt(k), it); });
    renderCompareButton();
  }

  // ---------------------------------------------------------------------------------
  // statistics

  function setView(view) {
    paintView(view);
    writeHash();
    if (view === "stats") loadStats();
    else requestAnimationFrame(fillViewport);
  }

  function paintView(view) {
    state.view = view;
    $("tab-grid").classList.toggle("active", view === "grid");
    $("tab-stats").classList.toggle("active", view === "stats");
    $("grid-view").classList.toggle("hidden", view !== "grid");
    $("stats-view").classList.toggle("hidden", view !== "stats");
  }

  const pct = (x) => (100 * x).toFixed(1) + "%";
  function fmtP(p) {
    if (p >= 0.01) return p.toFixed(2);
    if (p >= 0.001) return p.toFixed(3);
    return p.toExponential(1);
  }

  async function loadStats() {
    const box = $("stats-view");
    if (!state.exp) { box.replaceChildren(h("p", { class: "muted" }, "No experiment.")); return; }
    box.replaceChildren(h("p", { class: "muted" }, "computing…"));
    const q = new URLSearchParams({ experiment: state.exp });
    if (state.minStars) q.set("min_stars", state.minStars);
    let data;
    try {
      data = await api("/api/stats?" + q.toString());
    } catch (err) {
      box.replaceChildren(h("p", { class: "muted" }, err.message));
      return;
    }
    const minStars = h("select", { id: "stats-min-stars", onchange: (ev) => { state.minStars = ev.target.value; ev.target.blur(); writeHash(); loadStats(); } },
      h("option", { value: "" }, "favourites"),
      [1, 2, 3, 4, 5].map((n) => h("option", { value: String(n) }, `favourites or ${"★".repeat(n)}${n < 5 ? "+" : ""}`)));
    minStars.value = state.minStars;
    const values = data.values || [];
    box.replaceChildren(
      h("h2", {}, `What wins in ${data.experiment}`),
      h("p", { class: "lead" },
        h("b", {}, (data.favourites || 0).toLocaleString()), " winners among ",
        h("b", {}, (data.images || 0).toLocaleString()), " images",
        data.rejected ? ` (${data.rejected.toLocaleString()} rejected, left out)` : "",
        " · base rate ", h("b", {}, pct(data.base_rate || 0))),
      h("div", { class: "controls" }, h("label", {}, "Count as winners:", minStars)),
      values.length ? chart(values, data.base_rate || 0) : h("p", { class: "muted" }, "No traced values."),
      values.length ? statsTable(values) : "",
      h("p", { class: "note" },
        "Rate: winners / images with the value, with its 95% Wilson interval; lift: rate / base rate. ",
        data.test ? `p and q: ${data.test}. ` : "",
        "Ranked by the interval's lower bound. Click a row to see its images."));
    if (!data.favourites) {
      box.insertBefore(h("p", { class: "muted" }, "No favourites yet: mark some with f, then come back."), box.children[2]);
    }
  }

  function rowLabel(v) {
    const name = v.kind === "setting" ? "@" + v.name : v.name;
    return v.index === -1 ? `${name} (absent)` : `${name}: ${v.text}`;
  }

  function chart(values, base) {
    const NS = "http://www.w3.org/2000/svg";
    const s = (tag, attrs, ...kids) => {
      const el = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs || {})) {
        if (k.startsWith("on")) el.addEventListener(k.slice(2), v); else el.setAttribute(k, String(v));
      }
      for (const kid of kids.flat()) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
      return el;
    };
    const rows = values.slice(0, 60);
    const W = 960, left = 330, right = 70, top = 26, rowH = 20;
    const H = top + rows.length * rowH + 10;
    const maxX = Math.min(1, Math.max(0.05, ...rows.map((v) => v.high), base) * 1.08);
    const x = (r) => left + (W - left - right) * (r / maxX);
    const ticks = [];
    const step = maxX > 0.5 ? 0.2 : maxX > 0.2 ? 0.1 : maxX > 0.1 ? 0.05 : 0.02;
    for (let t = 0; t <= maxX + 1e-9; t += step) ticks.push(t);
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "favourite rate per value with 95% intervals" },
      ticks.map((t) => [
        s("line", { class: "grid-line", x1: x(t), x2: x(t), y1: top - 6, y2: H - 6 }),
        s("text", { class: "axis", x: x(t), y: 14, "text-anchor": "middle" }, pct(t).replace(".0%", "%")),
      ]),
      rows.map((v, k) => {
        const y = top + k * rowH + rowH / 2;
        const label = rowLabel(v);
        return s("g", { class: "row" + (v.significant ? " sig" : ""), onclick: () => { if (v.index >= 0) filterBy(`${v.name}:${v.index}`); } },
          s("title", {}, `${label}\n${v.favourites}/${v.images} = ${pct(v.rate)} [${pct(v.low)}, ${pct(v.high)}]`),
          s("text", { class: "lbl" + (v.index === -1 ? " absent" : ""), x: left - 10, y: y + 4, "text-anchor": "end" },
            label.length > 48 ? label.slice(0, 47) + "…" : label),
          s("line", { class: "ci", x1: x(v.low), x2: Math.max(x(v.high), x(v.low) + 0.5), y1: y, y2: y }),
          s("circle", { class: "pt", cx: x(v.rate), cy: y, r: 4 }),
          s("text", { class: "axis", x: W - right + 8, y: y + 4 }, `${v.favourites}/${v.images}`));
      }),
      s("line", { class: "base", x1: x(base), x2: x(base), y1: top - 8, y2: H - 4 }),
      s("text", { class: "axis", x: x(base) + 4, y: H - 2 }, `base ${pct(base)}`));
    const wrap = h("div", { class: "chart" }, svg);
    if (values.length > rows.length) wrap.append(h("p", { class: "note" }, `The chart shows the first ${rows.length} of ${values.length} values; the table has them all.`));
    return wrap;
  }

  function statsTable(values) {
    return h("table", { class: "stats-table" },
      h("thead", {}, h("tr", {}, ["", "value", "images", "winners", "rate", "95% interval", "lift", "p", "q", "significant"].map((t) => h("th", {}, t)))),
      h("tbody", {}, values.map((v) =>
        h("tr", { class: v.significant ? "sig" : "", title: v.index >= 0 ? "Show these images" : "",
                  onclick: () => { if (v.index >= 0) filterBy(`${v.name}:${v.index}`); } },
          h("td", {}, v.kind === "setting" ? "@" + v.name : v.name),
          h("td", { class: v.index === -1 ? "absent" : "" }, v.index === -1 ? "(absent)" : v.text || "(empty)"),
          h("td", {}, v.images.toLocaleString()),
          h("td", {}, v.favourites.toLocaleString()),
          h("td", {}, pct(v.rate)),
          h("td", {}, `${pct(v.low)} – ${pct(v.high)}`),
          h("td", {}, v.lift.toFixed(2) + "×"),
          h("td", {}, fmtP(v.p_value)),
          h("td", {}, v.q_value !== undefined ? fmtP(v.q_value) : ""),
          h("td", { class: "flag" }, v.significant ? "✓" : "")))));
  }

  // ---------------------------------------------------------------------------------
  // keys and clicks

  function zoom(factor) {
    const root = document.documentElement;
    const now = parseFloat(getComputedStyle(root).getPropertyValue("--cell")) || 184;
    const next = Math.max(96, Math.min(480, Math.round(now * factor)));
    root.style.setProperty("--cell", next + "px");
    try { localStorage.setItem("sdp-cell", String(next)); } catch (e) { /* private mode */ }
    const card = cardAt(state.sel);
    if (card) card.scrollIntoView({ block: "nearest" });
  }

  function onKey(ev) {
    const target = ev.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
    if (ev.key === "Escape") {
      if (typing) { target.blur(); return; }
      if (!$("help").classList.contains("hidden")) $("help").classList.add("hidden");
      else if (!$("compare").classList.contains("hidden")) closeCompare();
      else if (state.viewerOpen) closeViewer();
      else if (state.compare.length) { state.compare = []; markCompareRepaint(); }
      ev.preventDefault();
      return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (!$("help").classList.contains("hidden")) {
      if (ev.key === "?") $("help").classList.add("hidden");
      return;
    }
    const comparing = !$("compare").classList.contains("hidden");
    const key = ev.key;
    let handled = true;
    if (key === "?") $("help").classList.remove("hidden");
    else if (comparing) handled = false;
    else if (key === "g") setView("grid");
    else if (key === "s") setView("stats");
    else if (state.view !== "grid") handled = false;
    else if (key === "ArrowLeft" || key === "h") move(-1);
    else if (key === "ArrowRight" || key === "l") move(1);
    else if (key === "ArrowUp" || key === "k") move(state.viewerOpen ? -1 : -columns());
    else if (key === "ArrowDown" || key === "j") move(state.viewerOpen ? 1 : columns());
    else if (key === "Home") select(0);
    else if (key === "End") select(state.items.length - 1);
    else if (key === "PageDown") move(columns() * Math.max(1, Math.floor(window.innerHeight / (cardAt(0)?.offsetHeight || 200))));
    else if (key === "PageUp") move(-columns() * Math.max(1, Math.floor(window.innerHeight / (cardAt(0)?.offsetHeight || 200))));
    else if (key === "f") toggleFavourite(state.sel);
    else if (key === "x") toggleReject(state.sel);
    else if (/^[0-5]$/.test(key)) setStars(state.sel, Number(key));
    else if (key === "Enter") { if (!state.viewerOpen) openViewer(); }
    else if (key === "c") markCompare(state.sel);
    else if (key === "+" || key === "=") zoom(1.15);
    else if (key === "-" || key === "_") zoom(1 / 1.15);
    else handled = false;
    if (handled) ev.preventDefault();
  }

  function markCompareRepaint() {
    state.items.forEach((it, k) => { if (cardAt(k)) paintCard(cardAt(k), it); });
    renderCompareButton();
  }

  function onGridClick(ev) {
    const card = ev.target.closest(".card");
    if (!card) return;
    const i = Number(card.dataset.i);
    const button = ev.target.closest("button[data-act]");
    if (!button) {
      select(i, false);
      openViewer();
      return;
    }
    select(i, false);
    const act = button.dataset.act;
    if (act === "fav") toggleFavourite(i);
    else if (act === "reject") toggleReject(i);
    else if (act === "star") setStars(i, Number(button.dataset.n));
    else if (act === "compare") markCompare(i);
  }

  function bind() {
    document.addEventListener("keydown", onKey);
    $("grid").addEventListener("click", onGridClick);
    $("v-close").addEventListener("click", closeViewer);
    $("v-prev").addEventListener("click", () => move(-1));
    $("v-next").addEventListener("click", () => move(1));
    $("viewer").addEventListener("click", (ev) => { if (ev.target.classList.contains("viewer-image")) closeViewer(); });
    $("c-close").addEventListener("click", closeCompare);
    $("h-close").addEventListener("click", () => $("help").classList.add("hidden"));
    $("help").addEventListener("click", (ev) => { if (ev.target === $("help")) $("help").classList.add("hidden"); });
    $("help-btn").addEventListener("click", () => $("help").classList.remove("hidden"));
    $("compare-btn").addEventListener("click", openCompare);
    $("zoom-in").addEventListener("click", () => zoom(1.15));
    $("zoom-out").addEventListener("click", () => zoom(1 / 1.15));
    $("clear-filters").addEventListener("click", clearFilters);
    for (const [id, key] of [["f-fav", "fav"], ["f-rejected", "rejected"], ["f-stars", "stars"]]) {
      $(id).addEventListener("change", (ev) => { state.filters[key] = ev.target.value; ev.target.blur(); reload(); });
    }
    $("tab-grid").addEventListener("click", () => setView("grid"));
    $("tab-stats").addEventListener("click", () => setView("stats"));
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
      { rootMargin: "800px" }).observe($("sentinel"));
    window.addEventListener("hashchange", () => {  // edited by hand, or back/forward
      readHash();
      paintView(state.view);
      selectExperiment(state.exp, true);
    });
  }

  async function start() {
    try {
      const cell = localStorage.getItem("sdp-cell");
      if (cell) document.documentElement.style.setProperty("--cell", cell + "px");
    } catch (e) { /* private mode */ }
    bind();
    readHash();
    try {
      await loadExperiments();
    } catch (err) {
      toast(err.message);
      return;
    }
    if (!state.experiments.some((e) => e.name === state.exp)) {
      state.exp = state.experiments.length ? state.experiments[state.experiments.length - 1].name : null;
      state.filters.values = new Set();
    }
    paintView(state.view);
    await selectExperiment(state.exp, true);
  }

  start();
})();
