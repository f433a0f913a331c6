// stable-discovery gallery: screen images, mark favourites, look at what wins.
// Plain JavaScript, no build step. Every mark is POSTed to /api/rate at once; the
// experiment, filters, view and selected image live in the URL's hash so that a reload
// comes back here. The grid is a window onto the filtered list: it grows at either end
// as you scroll, and can open anywhere (at the selected image, at the last image).
"use strict";

(() => {
  const PAGE = 200;
  const POLL_MS = 2500;
  const SMALL = 256; // images this small are shown themselves, not as thumbnails
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

  const noFilters = () => ({ fav: "", rejected: "", stars: "", values: new Set(), q: "" });
  const state = {
    experiments: [],
    showArchived: false,
    exp: null,
    facets: [],
    filters: noFilters(),
    items: [],        // a window of the filtered list, in index order
    next: null,       // cursor after the window (null: it reaches the end)
    prev: null,       // cursor before it (null: it starts at the beginning)
    total: null,
    stamp: null,      // the experiment's last recording when the window was read
    loading: null,
    loadingPrev: null,
    opened: false,    // the window has been read (an empty list is read too)
    gen: 0,
    sel: -1,          // position of the selected image in items
    view: "grid",
    viewerOpen: false,
    compare: [],      // sample indices marked for comparison
    cmpItems: {},     // index → marks of the images in the comparison
    cmpFocus: 0,
    minStars: "",
    queue: Promise.resolve(),
    restoreIndex: null,
    readOnly: false,
    etag: null,
  };
  window.sdpPending = 0; // requests in flight: tests wait for 0

  // ---------------------------------------------------------------------------------
  // talking to the server

  async function api(path, options) {
    window.sdpPending += 1;
    try {
      const init = { headers: {}, cache: "no-store" };
      if (options && options.body !== undefined) {
        init.method = "POST";
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(options.body);
      }
      if (options && options.etag) init.headers["If-None-Match"] = options.etag;
      const response = await fetch(path, init);
      if (response.status === 304) return { notModified: true };
      let data = null;
      try { data = await response.json(); } catch (e) { data = null; }
      if (!response.ok) {
        const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
        error.status = response.status;
        throw error;
      }
      if (options && options.withEtag) data.etag = response.headers.get("ETag");
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
  const isSmall = (item) => item.width && item.height && Math.max(item.width, item.height) <= SMALL;
  const imageUrl = (item) => `/img/${enc(state.exp)}/${enc(item.file)}?v=${version()}`;
  const thumbUrl = (item) => isSmall(item) ? imageUrl(item) : `/thumb/${enc(state.exp)}/${enc(item.file)}?v=${version()}`;
  const sizeText = (item) => item.width && item.height ? `${item.width}×${item.height}` : "";
  const narrow = () => window.matchMedia("(max-width: 900px)").matches;

  // ---------------------------------------------------------------------------------
  // the URL hash: experiment, filters, view, selected image

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.exp = p.get("exp");
    state.filters = noFilters();
    state.filters.fav = p.get("fav") || "";
    state.filters.rejected = p.get("rejected") || "";
    state.filters.stars = p.get("stars") || "";
    state.filters.values = new Set(p.getAll("v"));
    state.filters.q = p.get("q") || "";
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
    if (state.filters.q.trim()) p.set("q", state.filters.q.trim());
    if (state.view === "stats") p.set("view", "stats");
    if (state.minStars) p.set("min_stars", state.minStars);
    const item = state.items[state.sel];
    if (item) p.set("sel", item.index);
    else if (state.restoreIndex !== null) p.set("sel", state.restoreIndex);
    history.replaceState(null, "", "#" + p.toString());
  }

  function filterQuery() {
    const p = new URLSearchParams({ experiment: state.exp });
    if (state.filters.fav) p.set("fav", state.filters.fav);
    if (state.filters.rejected) p.set("rejected", state.filters.rejected);
    if (state.filters.stars) p.set("stars", state.filters.stars);
    for (const v of state.filters.values) p.append("v", v);
    if (state.filters.q.trim()) p.set("q", state.filters.q.trim());
    return p;
  }
  const filtering = () => !!(state.filters.values.size || state.filters.fav || state.filters.rejected ||
                             state.filters.stars || state.filters.q.trim());

  // ---------------------------------------------------------------------------------
  // experiments, the header and the side panel

  async function loadExperiments() {
    const data = await api("/api/experiments", { withEtag: true });
    applyExperiments(data);
  }

  function applyExperiments(data) {
    state.experiments = data.experiments;
    state.etag = data.etag || null;
    // sdp gallery --read-only (or a workspace that cannot be written): marks are not offered
    state.readOnly = Boolean(data.read_only);
    document.body.classList.toggle("read-only", state.readOnly);
    renderExperiments();
    renderSummary();
  }

  function renderExperiments() {
    const list = $("experiments");
    const archived = state.experiments.filter((e) => e.archived).length;
    $("archived-count").textContent = archived ? `(${archived})` : "";
    const shown = state.experiments.filter((e) => !e.archived || state.showArchived || e.name === state.exp);
    list.replaceChildren(
      ...shown.map((e) =>
        h("li", { class: (e.name === state.exp ? "active" : "") + (e.archived ? " archived" : ""), "data-name": e.name,
                  title: e.template_path || "", tabindex: 0, role: "button",
                  onclick: () => selectExperiment(e.name, false),
                  onkeydown: (ev) => { if (ev.key === "Enter") { ev.preventDefault(); ev.stopPropagation(); selectExperiment(e.name, false); } } },
          h("div", { class: "name" }, e.name, e.archived ? h("span", { class: "tag" }, "archived") : "",
            e.running ? h("span", { class: "tag live" }, "running") : ""),
          h("div", { class: "meta" },
            `${e.done.toLocaleString()}${e.done < e.count ? "/" + e.count.toLocaleString() : ""} images`,
            e.favourites ? ` · ♥ ${e.favourites.toLocaleString()}` : "",
            e.rejected ? ` · ✕ ${e.rejected.toLocaleString()}` : "",
            ` · ${new Date(e.created_at * 1000).toLocaleDateString()}`)))
    );
    if (!shown.length) {
      list.replaceChildren(h("li", { class: "muted" },
        archived ? "Every experiment is archived: tick “show archived”." : "No experiments yet: run sdp run first."));
    }
    const e = currentExperiment();
    const btn = $("archive-btn");
    btn.classList.toggle("hidden", !e);
    if (e) btn.textContent = e.archived ? "unarchive" : "archive";
  }

  let refreshTimer = null;
  function refreshCountsSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => poll(true), 400);
  }

  function renderSummary() {
    const e = currentExperiment();
    const el = $("summary");
    renderProgress(e);
    renderDownload();
    if (!e) { el.textContent = ""; return; }
    const filtered = state.total !== null && filtering();
    el.replaceChildren(
      h("b", {}, e.name), ` — ${e.done.toLocaleString()} images`,
      filtered ? ` · ${state.total.toLocaleString()} shown` : "",
      ` · ♥ ${e.favourites.toLocaleString()}`,
      e.rejected ? ` · ✕ ${e.rejected.toLocaleString()}` : "",
      h("span", { class: "extra" }, ` · ${e.backend}, ${e.sampler} sampler, seed ${e.seed}`),
      state.readOnly ? h("span", { class: "read-only-tag" }, " · read-only") : ""
    );
  }

  let rate0 = null; // (time, done) when the current run was first seen: images per second
  function renderProgress(e) {
    const box = $("progress");
    if (!e || !e.running) { box.classList.add("hidden"); rate0 = null; return; }
    const now = Date.now() / 1000;
    if (!rate0 || rate0.name !== e.name || e.done < rate0.done) rate0 = { name: e.name, t: now, done: e.done };
    const speed = now - rate0.t > 2 && e.done > rate0.done ? (e.done - rate0.done) / (now - rate0.t) : null;
    const pct = e.count ? Math.floor((100 * e.done) / e.count) : 0;
    $("progress-text").textContent =
      `running ${e.done.toLocaleString()}/${e.count.toLocaleString()} (${pct}%)` + (speed ? ` · ${speed.toFixed(1)} img/s` : "");
    $("progress-bar").style.width = pct + "%";
    box.setAttribute("aria-valuemax", String(e.count));
    box.setAttribute("aria-valuenow", String(e.done));
    box.classList.remove("hidden");
  }

  function renderDownload() {
    const a = $("download");
    const e = currentExperiment();
    if (!e) { a.classList.add("hidden"); return; }
    a.classList.remove("hidden");
    const n = state.total !== null ? state.total : e.done;
    a.href = "/api/download?" + filterQuery().toString();
    a.textContent = `Download ${filtering() ? "these " : "all "}${n.toLocaleString()} image${n === 1 ? "" : "s"} (zip)`;
    a.title = "The images shown, with their metadata (PNG chunks and metadata.jsonl)";
  }

  function renderFilterControls() {
    $("f-fav").value = state.filters.fav;
    $("f-rejected").value = state.filters.rejected;
    $("f-stars").value = state.filters.stars;
    if (document.activeElement !== $("search")) $("search").value = state.filters.q;
  }

  const facetLabel = (facet) => (facet.kind === "setting" ? "@" : "") + facet.name;

  function renderFacets() {
    const box = $("facets");
    const groups = state.facets.map((facet) => {
      const picked = facet.values.filter((v) => state.filters.values.has(`${facet.name}:${v.choice}`)).length;
      const kind = facet.kind === "slot" || facet.kind === "setting" ? "" : facet.kind + " · ";
      return h("details", { open: facet.values.length > 1 && (facet.values.length <= 12 || picked > 0), "data-name": facet.name },
        h("summary", {}, facetLabel(facet), " ",
          h("span", { class: "kind" }, `${kind}${facet.values.length} value${facet.values.length === 1 ? "" : "s"}`),
          picked ? h("span", { class: "count" }, ` · ${picked} picked`) : ""),
        h("ul", {}, facet.values.map((v) => {
          const key = `${facet.name}:${v.choice}`;
          const text = v.absent ? "(absent)" : v.text || "(empty)";
          return h("li", { class: (v.count === 0 ? "none" : "") + (v.absent ? " absent" : "") },
            h("label", { title: v.absent ? `images without ${facetLabel(facet)}` : v.text },
              h("input", { type: "checkbox", "data-key": key, checked: state.filters.values.has(key),
                           onchange: (ev) => { toggleValue(key, ev.target.checked); ev.target.blur(); } }),
              h("span", { class: "text" }, text),
              h("span", { class: "n" }, v.count.toLocaleString())));
        })));
    });
    box.replaceChildren(...groups);
  }

  async function loadFacets() {
    const name = state.exp;
    if (!name) return;
    const gen = state.gen;
    try {
      const data = await api("/api/facets?" + filterQuery().toString());
      if (state.exp !== name || gen !== state.gen) return;
      state.facets = data.names;
      renderFacets();
      recaption();
    } catch (err) {
      toast(err.message);
    }
  }

  function toggleValue(key, on) {
    if (on === undefined) on = !state.filters.values.has(key);
    if (on) state.filters.values.add(key); else state.filters.values.delete(key);
    renderFacets();
    reload();
  }

  function clearFilters() {
    state.filters = noFilters();
    renderFilterControls();
    renderFacets();
    reload();
  }

  function openDrawer(open) {
    document.body.classList.toggle("drawer-open", open);
    $("scrim").classList.toggle("hidden", !open);
    $("menu-btn").setAttribute("aria-expanded", String(open));
  }
  const drawerOpen = () => document.body.classList.contains("drawer-open");

  async function toggleArchive() {
    const e = currentExperiment();
    if (!e) return;
    try {
      await api("/api/archive", { body: { experiment: e.name, archived: !e.archived } });
      toast(e.archived ? `${e.name} is back in the list` : `${e.name} archived: hidden from the list unless “show archived” is ticked`, "info");
      await poll(true);
    } catch (err) {
      toast(err.message);
    }
  }

  // ---------------------------------------------------------------------------------
  // the grid: a window onto the filtered list

  async function selectExperiment(name, keepFilters) {
    if (!keepFilters && name !== state.exp) {
      state.filters = noFilters();
      state.restoreIndex = null;
    }
    if (narrow() && !keepFilters) openDrawer(false);
    state.exp = name;
    state.compare = [];
    renderCompareButton();
    renderExperiments();
    renderFilterControls();
    state.facets = [];
    renderFacets();
    if (!name) {
      $("grid").replaceChildren();
      const empty = $("empty");
      empty.textContent = "No experiments in this workspace yet: run  sdp run TEMPLATE.sdp  first; they appear here as they are made.";
      empty.classList.remove("hidden");
      renderSummary();
      return;
    }
    await reload();
    if (state.view === "stats") loadStats();
  }

  function resetWindow() {
    state.gen += 1;
    state.items = [];
    state.total = null;
    state.next = null;
    state.prev = null;
    state.loading = null;
    state.loadingPrev = null;
    state.opened = false;
    state.sel = -1;
    $("grid").replaceChildren();
    $("empty").classList.add("hidden");
  }

  /** Show the filtered list from its start, or around the image to restore. */
  async function reload() {
    const at = state.restoreIndex;
    resetWindow();
    writeHash();
    const facets = loadFacets();
    if (at !== null) await openAt(at);
    else await loadMore();
    state.restoreIndex = null;
    if (state.items.length && state.sel < 0) select(0, false);
    renderSummary();
    showEmpty();
    await facets;
  }

  function pageQuery(extra) {
    const query = filterQuery();
    query.set("limit", PAGE);
    for (const [key, value] of Object.entries(extra)) query.set(key, value);
    return "/api/samples?" + query.toString();
  }

  /** The window at sample ``index``: the page from it on, and one before it. */
  function openAt(index) {
    const gen = state.gen;
    state.loading = openAtNow(index).finally(() => { if (gen === state.gen) state.loading = null; });
    return state.loading;
  }

  async function openAtNow(index) {
    const gen = state.gen;
    try {
      const [back, forth] = await Promise.all([
        api(pageQuery({ before: index, limit: 60 })),
        api(pageQuery({ after: index - 1, total: 1 })),
      ]);
      if (gen !== state.gen) return;
      state.total = forth.total;
      state.stamp = forth.stamp;
      state.prev = back.prev;
      state.next = forth.next;
      placeItems([...back.items, ...forth.items], 0);
      state.opened = true;
      const found = state.items.findIndex((it) => it.index >= index);
      select(found >= 0 ? found : state.items.length - 1, true, "center");
    } catch (err) {
      if (gen === state.gen) toast(err.message);
    }
  }

  /** The last page: End, when the window does not reach the end yet. */
  async function openAtEnd() {
    resetWindow();
    const gen = state.gen;
    try {
      state.loading = api(pageQuery({ before: "end", total: 1 }));
      const data = await state.loading;
      if (gen !== state.gen) return;
      state.loading = null;
      state.total = data.total;
      state.stamp = data.stamp;
      state.prev = data.prev;
      state.next = null;
      placeItems(data.items, 0);
      state.opened = true;
      select(state.items.length - 1);
    } catch (err) {
      if (gen === state.gen) { state.loading = null; toast(err.message); }
    }
  }

  /** Put ``items`` into the window at position ``at`` (and their cards into the grid). */
  function placeItems(items, at) {
    if (!items.length) return;
    const grid = $("grid");
    const frag = document.createDocumentFragment();
    items.forEach((item) => frag.append(makeCard(item)));
    grid.insertBefore(frag, grid.children[at] || null);
    state.items.splice(at, 0, ...items);
    if (at < state.items.length - items.length) renumber(at);
    else items.forEach((_, k) => { grid.children[at + k].dataset.i = at + k; });
  }

  function renumber(from) {
    const cards = $("grid").children;
    for (let k = from; k < cards.length; k++) cards[k].dataset.i = k;
  }

  function showEmpty() {
    const empty = $("empty");
    if (state.items.length || !state.exp) { empty.classList.add("hidden"); return; }
    const e = currentExperiment();
    empty.textContent = filtering() ? "No image matches these filters."
      : e && e.running ? "The run has not made an image yet: they appear here as they are made."
      : "This experiment has no images yet.";
    empty.classList.remove("hidden");
  }

  function loadMore() {
    if (state.loading) return state.loading;
    if (!state.exp || state.gen === 0) return Promise.resolve();
    const first = !state.opened;
    if (!first && state.next === null) return Promise.resolve();
    const gen = state.gen;
    const extra = first ? {} : { after: state.next };
    state.loading = api(pageQuery(extra))
      .then((data) => {
        if (gen !== state.gen) return;
        if (data.total !== undefined) state.total = data.total;
        if (first) state.stamp = data.stamp;
        const fresh = data.items.filter((it) => !state.items.length || it.index > state.items[state.items.length - 1].index);
        placeItems(fresh, state.items.length);
        state.opened = true;
        state.next = data.next;
        renderSummary();
        showEmpty();
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

  /** The page before the window, put above it without moving what is on screen. */
  function loadPrev() {
    if (state.loadingPrev) return state.loadingPrev;
    if (!state.exp || !state.opened || state.prev === null || !state.items.length) return Promise.resolve();
    const gen = state.gen;
    state.loadingPrev = api(pageQuery({ before: state.items[0].index }))
      .then((data) => {
        if (gen !== state.gen) return;
        const anchor = $("grid").children[0];
        const top = anchor ? anchor.getBoundingClientRect().top : 0;
        placeItems(data.items, 0);
        if (state.sel >= 0) state.sel += data.items.length;
        state.prev = data.prev;
        if (anchor) window.scrollBy(0, anchor.getBoundingClientRect().top - top);
      })
      .catch((err) => { if (gen === state.gen) toast(err.message); })
      .finally(() => { if (gen === state.gen) state.loadingPrev = null; });
    return state.loadingPrev;
  }

  /** Keep loading while an end of the grid is on screen. */
  function fillViewport() {
    if (state.view !== "grid" || !state.opened) return;
    if (state.next !== null && !state.loading && $("sentinel").getBoundingClientRect().top < window.innerHeight + 800) loadMore();
    if (state.prev !== null && !state.loadingPrev && $("sentinel-top").getBoundingClientRect().bottom > -400) loadPrev();
  }

  function caption(item) {
    const parts = [];
    for (const facet of state.facets) {
      const real = facet.values.filter((v) => !v.absent);
      if (real.length < 2 && !facet.values.some((v) => v.absent)) continue;
      const choice = item.trace ? item.trace[facet.name] : undefined;
      if (choice === undefined) continue;
      const value = real.find((v) => v.choice === choice);
      if (!value) continue;
      parts.push(facet.kind === "setting" ? `${facet.name} ${value.text}` : value.text || "(empty)");
    }
    return parts.join(" · ");
  }

  function makeCard(item) {
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", { class: "star", "data-act": "star", "data-n": n, title: `${n} star${n > 1 ? "s" : ""} (${n})`, tabindex: -1 }, "★"));
    const size = sizeText(item);
    const card = h("div", { class: "card", role: "gridcell", "data-index": item.index },
      h("div", { class: "pic" },
        h("img", { src: thumbUrl(item), alt: item.prompt, loading: "lazy", decoding: "async", draggable: "false",
                   class: isSmall(item) ? "small" : "" }),
        h("span", { class: "idx" }, "#" + item.index, size ? h("span", { class: "size" }, " · " + size) : ""),
        h("span", { class: "badge fav", "aria-hidden": "true" }, "♥"),
        h("span", { class: "badge rej", "aria-hidden": "true" }, "✕"),
        h("span", { class: "badge stars-badge" }, ""),
        h("span", { class: "cmp-tag" }, ""),
        h("div", { class: "bar" },
          h("span", { class: "stars" }, stars),
          h("button", { class: "fav", "data-act": "fav", title: "Favourite (f)", tabindex: -1 }, "♥"),
          h("button", { class: "rej", "data-act": "reject", title: "Reject (x)", tabindex: -1 }, "✕"),
          h("button", { class: "cmp", "data-act": "compare", title: "Compare (c)", tabindex: -1 }, "⇄"))),
      h("div", { class: "cap" }, caption(item) || item.prompt));
    card.title = item.prompt;
    paintCard(card, item);
    return card;
  }

  function paintCard(card, item) {
    card.classList.toggle("is-fav", item.favourite);
    card.classList.toggle("is-rej", item.rejected);
    card.classList.toggle("rated", !!item.stars || item.favourite || item.rejected);
    card.dataset.stars = item.stars || 0;
    const badge = card.querySelector(".stars-badge");
    badge.textContent = item.stars ? "★" + item.stars : "";
    badge.setAttribute("aria-label", item.stars ? `${item.stars} stars` : "");
    card.querySelectorAll(".star").forEach((b) => b.classList.toggle("lit", Number(b.dataset.n) <= (item.stars || 0)));
    const slot = state.compare.indexOf(item.index);
    card.classList.toggle("is-cmp", slot >= 0);
    card.querySelector(".cmp-tag").textContent = slot === 0 ? "A" : slot === 1 ? "B" : "";
  }

  function recaption() {
    const cards = $("grid").children;
    for (let k = 0; k < cards.length; k++) {
      const cap = cards[k].querySelector(".cap");
      if (cap && state.items[k]) cap.textContent = caption(state.items[k]) || state.items[k].prompt;
    }
  }

  const cardAt = (i) => $("grid").children[i] || null;
  const posOf = (index) => state.items.findIndex((it) => it.index === index);

  function columns() {
    const cols = getComputedStyle($("grid")).gridTemplateColumns.split(" ").filter(Boolean).length;
    return Math.max(1, cols);
  }

  function select(i, scroll = true, block = "nearest") {
    if (!state.items.length) return;
    i = Math.max(0, Math.min(i, state.items.length - 1));
    const old = cardAt(state.sel);
    if (old) old.classList.remove("sel");
    state.sel = i;
    const card = cardAt(i);
    if (card) {
      card.classList.add("sel");
      if (scroll) card.scrollIntoView({ block });
    }
    writeHash();
    if (state.next !== null && i >= state.items.length - columns() * 3) loadMore();
    if (state.prev !== null && i < columns() * 3) loadPrev();
    if (state.viewerOpen) openViewer();
  }

  async function move(step) {
    let target = state.sel + step;
    if (target >= state.items.length && state.next !== null) await loadMore();
    if (target < 0 && state.prev !== null) {
      await loadPrev();
      target = state.sel + step;
    }
    if (target < 0) target = step < -1 && state.sel > 0 ? state.sel % columns() : 0;
    if (target >= state.items.length) target = step > 1 ? state.sel : state.items.length - 1;
    select(target);
  }

  async function home() {
    if (state.prev === null) { select(0); return; }
    state.restoreIndex = null;
    await reload();
    select(0);
  }

  async function end() {
    if (state.next === null) { select(state.items.length - 1); return; }
    const wasOpen = state.viewerOpen;
    await openAtEnd();
    if (wasOpen && !state.viewerOpen) openViewer();
  }

  // ---------------------------------------------------------------------------------
  // live: follow the workspace while runs add images

  let polling = false;
  async function poll(force) {
    if (polling || (!force && document.visibilityState === "hidden")) return;
    polling = true;
    try {
      const data = await api("/api/experiments", { etag: force ? null : state.etag, withEtag: true });
      if (data.notModified) return;
      const before = currentExperiment();
      applyExperiments(data);
      if (!state.exp && state.experiments.length) {
        await selectExperiment(state.experiments[state.experiments.length - 1].name, true);
        return;
      }
      const now = currentExperiment();
      if (before && !now) {
        toast(`${before.name} is no longer in the workspace (removed or renamed)`);
        const listed = state.experiments.filter((e) => !e.archived || state.showArchived);
        await selectExperiment(listed.length ? listed[listed.length - 1].name : null, false);
        return;
      }
      if (now && before && now.name === before.name && state.stamp !== null && now.updated_at > state.stamp) await catchUp();
    } catch (err) {
      /* the next poll tries again */
    } finally {
      polling = false;
    }
  }

  /** Put the images a run added since the window was read in their places. */
  async function catchUp() {
    const gen = state.gen;
    const query = filterQuery();
    query.set("since", String(state.stamp));
    query.set("limit", "1000");
    const data = await api("/api/samples?" + query.toString());
    if (gen !== state.gen) return;
    state.stamp = data.stamp;
    if (data.more) {  // too much to merge: read the window again where it is
      state.restoreIndex = state.items[state.sel] ? state.items[state.sel].index : null;
      await reload();
      return;
    }
    const have = new Set(state.items.map((it) => it.index));
    let added = 0;
    for (const item of data.items) {
      if (have.has(item.index)) continue;
      added += 1;
      const lo = state.items.length ? state.items[0].index : -1;
      const hi = state.items.length ? state.items[state.items.length - 1].index : -1;
      if (state.items.length && ((item.index < lo && state.prev !== null) || (item.index > hi && state.next !== null))) continue;
      let at = state.items.findIndex((it) => it.index > item.index);
      if (at < 0) at = state.items.length;
      placeItems([item], at);
      if (state.sel >= at) state.sel += 1;
    }
    if (state.total !== null) state.total += added;
    if (state.sel < 0 && state.items.length) select(0, false);
    renderSummary();
    showEmpty();
    facetsSoon();
  }

  let facetsTimer = null;
  let facetsAt = 0;
  function facetsSoon() {
    if (facetsTimer) return;
    const wait = Math.max(0, facetsAt + 4000 - Date.now());
    facetsTimer = setTimeout(() => {
      facetsTimer = null;
      facetsAt = Date.now();
      loadFacets();
    }, wait);
  }

  // ---------------------------------------------------------------------------------
  // marks: optimistic, then confirmed by the server, one request after another

  /** Every copy of the marks of sample ``index`` on the page (grid, comparison). */
  function copiesOf(index) {
    const copies = [];
    const pos = posOf(index);
    if (pos >= 0) copies.push(state.items[pos]);
    if (state.cmpItems[index]) copies.push(state.cmpItems[index]);
    return copies;
  }
  const marksOf = (index) => copiesOf(index)[0] || null;

  function repaintIndex(index) {
    const pos = posOf(index);
    if (pos >= 0 && cardAt(pos)) paintCard(cardAt(pos), state.items[pos]);
    const shown = state.items[state.sel];
    if (state.viewerOpen && shown && shown.index === index) renderViewerActions();
    if (!$("compare").classList.contains("hidden")) renderCompareActions();
  }

  const unconfirmed = new Map(); // index → changes sent and not yet answered

  function rate(index, change) {
    const copies = copiesOf(index);
    if (!copies.length) return Promise.resolve();
    if (state.readOnly) {
      toast("this gallery is read-only: marks cannot be changed here", "info");
      return Promise.resolve();
    }
    copies.forEach((c) => Object.assign(c, change));
    repaintIndex(index);
    const body = { experiment: state.exp, index, ...change };
    const exp = state.exp;
    const key = `${exp}\n${index}`;
    unconfirmed.set(key, (unconfirmed.get(key) || 0) + 1);
    const answered = () => {
      const left = unconfirmed.get(key) - 1;
      if (left) unconfirmed.set(key, left); else unconfirmed.delete(key);
      return left === 0; // an answer to an older change must not undo a newer one
    };
    state.queue = state.queue
      .then(() => api("/api/rate", { body }))
      .then((data) => {
        if (answered() && state.exp === exp) {
          copiesOf(index).forEach((c) => Object.assign(c, data.rating));
          repaintIndex(index);
        }
        refreshCountsSoon();
      })
      .catch((err) => {
        answered();
        toast(`not saved: ${err.message}`);
        if (state.exp === exp) refreshMarks(index);
      });
    return state.queue;
  }

  async function refreshMarks(index) {
    try {
      const record = await api(`/api/record?experiment=${enc(state.exp)}&index=${index}`);
      copiesOf(index).forEach((c) => Object.assign(c, record.rating));
      repaintIndex(index);
    } catch (e) { /* the toast already said it */ }
  }

  function toggleFavourite(index) {
    const m = marksOf(index);
    if (m) rate(index, { favourite: !m.favourite });
  }
  function toggleReject(index) {
    const m = marksOf(index);
    if (m) rate(index, { rejected: !m.rejected });
  }
  function setStars(index, n) {
    const m = marksOf(index);
    if (m) rate(index, { stars: n === 0 || m.stars === n ? null : n });
  }
  /** A marking key (f, x, 0-5) on sample ``index``; whether it was one. */
  function markKey(key, index) {
    if (index === undefined || index === null) return false;
    if (key === "f") toggleFavourite(index);
    else if (key === "x") toggleReject(index);
    else if (/^[0-5]$/.test(key)) setStars(index, Number(key));
    else return false;
    return true;
  }
  const selIndex = () => (state.items[state.sel] ? state.items[state.sel].index : null);

  // ---------------------------------------------------------------------------------
  // the viewer

  let recordToken = 0;
  async function openViewer() {
    const item = state.items[state.sel];
    if (!item) return;
    state.viewerOpen = true;
    $("viewer").classList.remove("hidden");
    document.body.classList.add("modal");
    const img = $("v-img");
    img.src = imageUrl(item);
    img.alt = item.prompt;
    img.classList.toggle("small", !!isSmall(item));
    $("v-title").textContent = `#${item.index}` + (sizeText(item) ? ` · ${sizeText(item)}` : "");
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
    if (!state.viewerOpen) return;
    state.viewerOpen = false;
    $("viewer").classList.add("hidden");
    document.body.classList.remove("modal");
    $("v-img").removeAttribute("src");
    const card = cardAt(state.sel);
    if (card) card.scrollIntoView({ block: "nearest" });
  }

  function actionButtons(index) {
    const item = marksOf(index);
    const stars = [1, 2, 3, 4, 5].map((n) =>
      h("button", { class: "mark star" + (n <= (item.stars || 0) ? " lit" : ""), title: `${n} star${n > 1 ? "s" : ""} (${n})`,
                    "aria-label": `${n} star${n > 1 ? "s" : ""}`, "data-act": "star", "data-n": n, onclick: () => setStars(index, n) }, "★"));
    return [
      h("span", { class: "group" },
        h("button", { class: "mark fav" + (item.favourite ? " lit" : ""), "data-act": "fav", title: "Favourite (f)",
                      "aria-label": "Favourite", onclick: () => toggleFavourite(index) }, "♥"),
        h("span", { class: "label" }, item.favourite ? "favourite" : "favourite?")),
      h("span", { class: "group stars-group" }, stars),
      h("span", { class: "group" },
        h("button", { class: "mark rej" + (item.rejected ? " lit" : ""), "data-act": "reject", title: "Reject (x)",
                      "aria-label": "Reject", onclick: () => toggleReject(index) }, "✕"),
        h("span", { class: "label" }, item.rejected ? "rejected" : "reject")),
    ];
  }

  function renderViewerActions() {
    const index = selIndex();
    if (index === null) return;
    $("v-actions").replaceChildren(...actionButtons(index),
      h("button", { class: "btn cmp-mark", "data-act": "compare", title: "Compare (c)", onclick: () => markCompare(index) },
        state.compare.includes(index) ? "⇄ marked" : "⇄ compare"));
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
    const settingRows = Object.entries(record.settings).map(([name, value]) => {
      let shown = typeof value === "object" ? JSON.stringify(value) : String(value);
      if (name === "model" && record.backend === "dummy") shown = `none: the dummy backend draws test pictures (the template names ${shown})`;
      return h("tr", { class: other && differs(value, other.settings[name]) ? "diff" : "" }, h("td", {}, name), h("td", {}, shown));
    });
    return [
      h("h3", {}, "Prompt"), h("div", { class: "prompt" + (differs(record.prompt, other && other.prompt) ? " diff" : "") }, record.prompt || "(empty)"),
      h("h3", {}, "Negative"), h("div", { class: "prompt" }, record.negative || "(none)"),
      h("h3", {}, "Trace"), h("table", {}, h("tbody", {}, traceRows)),
      h("h3", {}, "Generation"),
      h("table", {}, h("tbody", {},
        record.backend ? h("tr", {}, h("td", {}, "backend"), h("td", {}, record.backend)) : "",
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

  /** Swipe left / right on the viewer's image: next / previous. */
  function bindSwipe(el) {
    let start = null;
    el.addEventListener("touchstart", (ev) => {
      if (ev.touches.length === 1) start = { x: ev.touches[0].clientX, y: ev.touches[0].clientY, t: Date.now() };
    }, { passive: true });
    el.addEventListener("touchend", (ev) => {
      if (!start || !ev.changedTouches.length) return;
      const dx = ev.changedTouches[0].clientX - start.x;
      const dy = ev.changedTouches[0].clientY - start.y;
      const quick = Date.now() - start.t < 800;
      start = null;
      if (quick && Math.abs(dx) > 50 && Math.abs(dx) > 1.5 * Math.abs(dy)) move(dx < 0 ? 1 : -1);
    }, { passive: true });
  }

  // ---------------------------------------------------------------------------------
  // compare two images

  function renderCompareButton() {
    const btn = $("compare-btn");
    $("compare-n").textContent = `${state.compare.length}/2`;
    btn.disabled = state.compare.length !== 2;
    btn.classList.toggle("on", state.compare.length > 0);
  }

  function markCompare(index) {
    if (index === null || index === undefined) return;
    const at = state.compare.indexOf(index);
    if (at >= 0) state.compare.splice(at, 1);
    else {
      state.compare.push(index);
      if (state.compare.length > 2) state.compare.shift();
    }
    markCompareRepaint();
    if (state.viewerOpen) renderViewerActions();
    if (state.compare.length === 2 && at < 0) openCompare();
  }

  function markCompareRepaint() {
    state.items.forEach((it, k) => { if (cardAt(k)) paintCard(cardAt(k), it); });
    renderCompareButton();
  }

  const comparing = () => !$("compare").classList.contains("hidden");

  async function openCompare() {
    if (state.compare.length !== 2) return;
    closeViewer();
    const [a, b] = state.compare;
    $("compare").classList.remove("hidden");
    document.body.classList.add("modal");
    state.cmpFocus = 0;
    $("c-body").replaceChildren(h("p", { class: "muted" }, "loading…"));
    try {
      const [ra, rb] = await Promise.all([a, b].map((idx) => api(`/api/record?experiment=${enc(state.exp)}&index=${idx}`)));
      state.cmpItems = {};
      for (const r of [ra, rb]) {
        const loaded = state.items[posOf(r.index)];
        state.cmpItems[r.index] = { index: r.index, ...r.rating, ...(loaded ? { favourite: loaded.favourite, stars: loaded.stars, rejected: loaded.rejected } : {}) };
      }
      $("c-body").replaceChildren(comparePane(ra, rb, "A", 0), comparePane(rb, ra, "B", 1));
      renderCompareActions();
      focusPane(0);
    } catch (err) {
      $("c-body").replaceChildren(h("p", { class: "muted" }, err.message));
    }
  }

  function comparePane(record, other, tag, k) {
    const loaded = state.items[posOf(record.index)];
    const small = loaded ? isSmall(loaded) : Math.max(record.settings.width || 0, record.settings.height || 0) <= SMALL;
    return h("div", { class: "compare-pane", "data-index": record.index, "data-side": k, tabindex: -1,
                      onclick: () => focusPane(k) },
      h("div", { class: "viewer-head" }, h("h2", {}, `${tag} · #${record.index}`)),
      h("div", { class: "pic" }, h("img", { src: imageUrl({ file: record.file }), alt: record.prompt, class: small ? "small" : "" })),
      h("div", { class: "actions", "data-index": record.index }),
      h("div", { class: "record" }, recordView(record, other)));
  }

  function focusPane(k) {
    state.cmpFocus = k;
    document.querySelectorAll("#c-body .compare-pane").forEach((pane) => {
      pane.classList.toggle("focused", Number(pane.dataset.side) === k);
    });
  }

  function renderCompareActions() {
    document.querySelectorAll("#c-body .actions").forEach((box) => {
      const index = Number(box.dataset.index);
      if (state.cmpItems[index]) box.replaceChildren(...actionButtons(index));
    });
  }

  function closeCompare() {
    if (!comparing()) return;
    $("compare").classList.add("hidden");
    document.body.classList.remove("modal");
    $("c-body").replaceChildren();
    state.compare = [];
    state.cmpItems = {};
    markCompareRepaint();
  }

  // ---------------------------------------------------------------------------------
  // statistics

  function setView(view) {
    closeViewer();
    closeCompare();
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
      values.length ? h("div", { class: "table-wrap" }, statsTable(values)) : "",
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
    if (v.index === -1) return `${name} (absent)`;
    return v.kind === "item" ? name : `${name}: ${v.text}`;
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
        return s("g", { class: "row" + (v.significant ? " sig" : ""), onclick: () => filterBy(`${v.name}:${v.index}`) },
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
        h("tr", { class: v.significant ? "sig" : "", title: v.index >= 0 ? "Show these images" : "Show the images without it",
                  "data-key": `${v.name}:${v.index}`, onclick: () => filterBy(`${v.name}:${v.index}`) },
          h("td", {}, v.kind === "setting" ? "@" + v.name : v.name),
          h("td", { class: v.index === -1 ? "absent" : "" }, v.index === -1 ? "(absent)" : v.kind === "item" ? "(present)" : v.text || "(empty)"),
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

  const screenRows = () => Math.max(1, Math.floor(window.innerHeight / (cardAt(0)?.offsetHeight || 200)));

  function gridKey(key) {
    if (key === "ArrowLeft" || key === "h") move(-1);
    else if (key === "ArrowRight" || key === "l") move(1);
    else if (key === "ArrowUp" || key === "k") move(-columns());
    else if (key === "ArrowDown" || key === "j") move(columns());
    else if (key === "Home") home();
    else if (key === "End") end();
    else if (key === "PageDown") move(columns() * screenRows());
    else if (key === "PageUp") move(-columns() * screenRows());
    else if (markKey(key, selIndex())) { /* marked */ }
    else if (key === "Enter") openViewer();
    else if (key === "c") markCompare(selIndex());
    else if (key === "+" || key === "=") zoom(1.15);
    else if (key === "-" || key === "_") zoom(1 / 1.15);
    else return false;
    return true;
  }

  function viewerKey(key) {
    if (["ArrowLeft", "h", "ArrowUp", "k"].includes(key)) move(-1);
    else if (["ArrowRight", "l", "ArrowDown", "j"].includes(key)) move(1);
    else if (key === "Home") home();
    else if (key === "End") end();
    else if (markKey(key, selIndex())) { /* marked */ }
    else if (key === "c") markCompare(selIndex());
    else if (key === "Enter") { /* already open */ }
    else return false;
    return true;
  }

  function compareKey(key) {
    if (["ArrowLeft", "h", "ArrowRight", "l", "Tab"].includes(key)) {
      focusPane(key === "ArrowLeft" || key === "h" ? 0 : key === "Tab" ? 1 - state.cmpFocus : 1);
      return true;
    }
    return markKey(key, state.compare[state.cmpFocus]);
  }

  function onEscape(typing, target) {
    if (typing) { target.blur(); return; }
    if (!$("help").classList.contains("hidden")) $("help").classList.add("hidden");
    else if (comparing()) closeCompare();
    else if (state.viewerOpen) closeViewer();
    else if (drawerOpen()) openDrawer(false);
    else if (state.compare.length) { state.compare = []; markCompareRepaint(); }
  }

  function onKey(ev) {
    const target = ev.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
    if (ev.key === "Escape") { onEscape(typing, target); ev.preventDefault(); return; }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key;
    const pressable = target && target.closest && !target.closest(".card") &&
      target.closest("button, a, summary, [role=button]");
    if (pressable && (key === "Enter" || key === " ")) return; // the focused control's own key
    if (!$("help").classList.contains("hidden")) {
      if (key === "?") $("help").classList.add("hidden");
      return;
    }
    let handled = true;
    if (key === "?") $("help").classList.remove("hidden");
    else if (key === "g" || key === "s") setView(key === "g" ? "grid" : "stats");
    else if (key === "/") focusSearch();
    else if (comparing()) handled = compareKey(key);
    else if (state.viewerOpen) handled = viewerKey(key);
    else if (state.view === "grid") handled = gridKey(key);
    else handled = false;
    if (handled) ev.preventDefault();
  }

  function focusSearch() {
    closeViewer();
    closeCompare();
    if (narrow()) openDrawer(true);
    $("search").focus();
    $("search").select();
  }

  function onGridClick(ev) {
    const card = ev.target.closest(".card");
    if (!card) return;
    const i = Number(card.dataset.i);
    const index = Number(card.dataset.index);
    const button = ev.target.closest("button[data-act]");
    select(i, false);
    if (!button) { openViewer(); return; }
    button.blur(); // the keys stay with the grid
    const act = button.dataset.act;
    if (act === "fav") toggleFavourite(index);
    else if (act === "reject") toggleReject(index);
    else if (act === "star") setStars(index, Number(button.dataset.n));
    else if (act === "compare") markCompare(index);
  }

  let searchTimer = null;
  function onSearch(ev) {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      if (state.filters.q === ev.target.value) return;
      state.filters.q = ev.target.value;
      reload();
    }, 300);
  }

  function bind() {
    document.addEventListener("keydown", onKey);
    $("grid").addEventListener("click", onGridClick);
    $("v-close").addEventListener("click", closeViewer);
    $("v-prev").addEventListener("click", () => move(-1));
    $("v-next").addEventListener("click", () => move(1));
    $("viewer").addEventListener("click", (ev) => { if (ev.target.classList.contains("viewer-image")) closeViewer(); });
    bindSwipe($("v-stage"));
    $("c-close").addEventListener("click", closeCompare);
    $("h-close").addEventListener("click", () => $("help").classList.add("hidden"));
    $("help").addEventListener("click", (ev) => { if (ev.target === $("help")) $("help").classList.add("hidden"); });
    $("help-btn").addEventListener("click", () => $("help").classList.remove("hidden"));
    $("compare-btn").addEventListener("click", openCompare);
    $("zoom-in").addEventListener("click", () => zoom(1.15));
    $("zoom-out").addEventListener("click", () => zoom(1 / 1.15));
    $("clear-filters").addEventListener("click", clearFilters);
    $("menu-btn").addEventListener("click", () => openDrawer(!drawerOpen()));
    $("side-close").addEventListener("click", () => openDrawer(false));
    $("scrim").addEventListener("click", () => openDrawer(false));
    $("archive-btn").addEventListener("click", toggleArchive);
    $("show-archived").addEventListener("change", (ev) => {
      state.showArchived = ev.target.checked;
      try { localStorage.setItem("sdp-archived", state.showArchived ? "1" : ""); } catch (e) { /* private mode */ }
      renderExperiments();
    });
    $("search").addEventListener("input", onSearch);
    $("search").addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.target.blur(); if (narrow()) openDrawer(false); } });
    for (const [id, key] of [["f-fav", "fav"], ["f-rejected", "rejected"], ["f-stars", "stars"]]) {
      $(id).addEventListener("change", (ev) => { state.filters[key] = ev.target.value; ev.target.blur(); reload(); });
    }
    $("tab-grid").addEventListener("click", () => setView("grid"));
    $("tab-stats").addEventListener("click", () => setView("stats"));
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); },
      { rootMargin: "800px" }).observe($("sentinel"));
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadPrev(); },
      { rootMargin: "400px" }).observe($("sentinel-top"));
    window.addEventListener("hashchange", () => {  // edited by hand, or back/forward
      readHash();
      paintView(state.view);
      selectExperiment(state.exp, true);
    });
    document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") poll(false); });
  }

  async function start() {
    try {
      const cell = localStorage.getItem("sdp-cell");
      if (cell) document.documentElement.style.setProperty("--cell", cell + "px");
      state.showArchived = localStorage.getItem("sdp-archived") === "1";
    } catch (e) { /* private mode */ }
    $("show-archived").checked = state.showArchived;
    bind();
    readHash();
    try {
      await loadExperiments();
    } catch (err) {
      toast(err.message);
      return;
    }
    if (!state.experiments.some((e) => e.name === state.exp)) {
      const listed = state.experiments.filter((e) => !e.archived || state.showArchived);
      state.exp = listed.length ? listed[listed.length - 1].name : null;
      state.filters = noFilters();
      state.restoreIndex = null;
    }
    paintView(state.view);
    await selectExperiment(state.exp, true);
    setInterval(() => poll(false), POLL_MS);
  }

  start();
})();
