// @ts-check
/** #/cluster/<name>: the replication tree as an SVG graph, live, with drag and drop. */

import { ApiError, get, keyPath, keyText } from "../api.js";
import { confirmAction, notify, run } from "../dialogs.js";
import { esc, h } from "../dom.js";
import { galeraId, galeraState, knownNodes } from "../galera.js";
import { onLive } from "../live.js";
import { app } from "../state.js";
import { layout } from "../tree.js";
import { instancePanel } from "./instance.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 290; // card width
const H = 104; // card height
const CHARS = 44; // characters of a line that fit in a card's width (12 px font)
const PROBLEM_CHARS = 38; // the same for the problems line (bold 11 px, after "⚠ ")
const BADGED_KEY_CHARS = 23; // characters of the key (bold 13 px) left of a Galera badge
const BADGE_W = 74; // the Galera badge at the card's top right
const DX = W + 70;
const DY = H + 16;
const MARGIN = 16;
const DRAG_START_PX = 5;
const PANEL_EVERY_MS = 10_000; // the selected instance's panel follows its changes at most this often

/**
 * @typedef {import("../tree.js").Placed} Placed
 * @typedef {{Key: {Hostname: string, Port: number}, Allowed: boolean, Reason: string}} Verdict
 * @typedef {{source: string, mode: "instance" | "replicas", x: number, y: number, pointer: number,
 *   started: boolean, verdicts: Map<string, Verdict> | null, failed: string, ghost: SVGGElement | null}} Drag
 */

/** @param {string} version @returns {string} "10.11.19-MariaDB" */
function shortVersion(version) {
  return String(version || "?").split("-").slice(0, 2).join("-");
}

/** @param {{Valid: boolean, Int64: number} | undefined} value @returns {number | null} */
function nullable(value) {
  return value && value.Valid ? value.Int64 : null;
}

/** What the card says, as lines and marks; also the aria-label.
 * @param {any} i instance JSON @param {Placed} place @param {string[]} problems @param {boolean} maintenance
 * @param {{text: string, warn: boolean} | null} galera its Galera state in words, null if not Galera */
function describe(i, place, problems, maintenance, galera) {
  const key = keyText(i.Key);
  const master = keyText(i.MasterKey);
  const lag = nullable(i.ReplicationLagSeconds);
  const gtid = i.UsingMariaDBGTID ? "MariaDB GTID" : i.UsingOracleGTID ? "GTID" : i.GtidBinlogPos || i.ExecutedGtidSet ? "GTID-capable" : "no GTID";
  const galeraLine = galera ? `${galera.warn ? "⚠ " : ""}Galera ${galera.text}` : "";
  const threads = master
    ? `IO ${i.ReplicationIOThreadRuning ? "yes" : "NO"} · SQL ${i.ReplicationSQLThreadRuning ? "yes" : "NO"} · lag ${lag === null ? "?" : `${lag}s`}${i.SQLDelay ? ` (delay ${i.SQLDelay}s)` : ""}`
    : galeraLine || "not replicating (master)";
  const roleMark = {
    master: "MASTER",
    "co-master": `CO-MASTER ⇄ ${place.coMaster}`,
    galera: `GALERA PEER · ${i.Galera?.ClusterName ?? ""}`,
    intermediate: `INTERMEDIATE MASTER (${place.children.length})`,
    replica: "",
    orphan: `MASTER ${master} UNKNOWN`,
  }[place.role];
  const marks = [
    roleMark,
    master ? galeraLine : "", // a Galera node that is also an async replica
    !i.IsLastCheckValid ? "✖ UNREACHABLE" : "",
    i.IsLastCheckValid && !i.IsUpToDate ? "STALE" : "",
    i.IsDowntimed ? `⏸ DOWNTIMED (${i.DowntimeOwner})` : "",
    maintenance ? "🔧 MAINTENANCE" : "",
    i.GtidErrant ? `ERRANT GTID ${i.GtidErrant}` : "",
  ].filter(Boolean);
  const lines = [
    `${shortVersion(i.Version)} · ${i.ReadOnly ? "ro" : "RW"} · ${i.Binlog_format || "no binlog"} · ${gtid}`,
    threads,
    `dc ${i.DataCenter || "—"} · promotion ${i.PromotionRule || "neutral"}`,
  ];
  const label = [key, ...marks, ...lines, problems.length ? `problems: ${problems.join(", ")}` : "no problems"].join("; ");
  return { key, lines, marks, label, lag, galera };
}

/** One line of a card, cut to the card's width; the whole text as its tooltip when cut.
 * @param {string} text @param {string} attributes @param {number} [chars] */
function line(text, attributes, chars = CHARS) {
  if (text.length <= chars) return `<text ${attributes}>${esc(text)}</text>`;
  return `<text ${attributes}><title>${esc(text)}</title>${esc(text.slice(0, chars - 1))}…</text>`;
}

/** The "GALERA" badge at a Galera node's top right (⚠ when its state calls for attention).
 * @param {{text: string, warn: boolean}} galera */
function galeraBadge(galera) {
  return `<g class="galera-badge" transform="translate(${W - BADGE_W - 6},5)"><title>${esc(`Galera ${galera.text}`)}</title><rect width="${BADGE_W}" height="17" rx="8"/><text x="${BADGE_W / 2}" y="12.5" text-anchor="middle">${galera.warn ? "⚠ " : ""}GALERA</text></g>`;
}

/** @param {ReturnType<typeof describe>} d @param {string[]} problems @param {Placed} place */
function cardMarkup(d, problems, place) {
  const texts = [
    d.galera ? line(d.key, 'class="k" x="10" y="17"', BADGED_KEY_CHARS) + galeraBadge(d.galera) : `<text class="k" x="10" y="17">${esc(d.key)}</text>`,
    ...d.lines.map((text, n) => line(text, `x="10" y="${34 + n * 14}"`)),
    line(d.marks.join(" · "), `class="marks" x="10" y="${34 + d.lines.length * 14}"`),
  ];
  if (problems.length) {
    // the first problem, and how many more (all of them in the tooltip and the aria-label)
    const more = problems.length > 1 ? ` +${problems.length - 1}` : "";
    const room = PROBLEM_CHARS - more.length;
    const first = problems[0].length <= room ? problems[0] : `${problems[0].slice(0, room - 1)}…`;
    const all = `⚠ ${problems.join(", ")}`;
    texts.push(`<text class="problems" x="10" y="${H - 9}"><title>${esc(all)}</title>${esc(`⚠ ${first}${more}`)}</text>`);
  }
  const handle = place.children.length
    ? `<g class="handle" data-handle="${esc(d.key)}" transform="translate(${W + 12},${H / 2})"><circle r="10"/><text x="0" y="4" text-anchor="middle">${place.children.length}</text></g>`
    : "";
  return `<rect class="card" width="${W}" height="${H}" rx="6"/>${texts.join("")}${handle}`;
}

/** " · Galera <name>: n nodes" for each wsrep cluster among the instances ("" when none).
 * @param {any[]} list @returns {string} */
function galeraSummary(list) {
  /** @type {Map<string, number>} */
  const nodes = new Map();
  for (const i of list) if (i.Galera) nodes.set(i.Galera.ClusterName, (nodes.get(i.Galera.ClusterName) ?? 0) + 1);
  return [...nodes].map(([name, count]) => ` · Galera ${name}: ${count} node${count === 1 ? "" : "s"}`).join("");
}

/** @param {import("../tree.js").Layout} lay @param {import("../tree.js").Edge} edge */
function edgePath(lay, edge) {
  const from = lay.placed.get(edge.from);
  const to = lay.placed.get(edge.to);
  if (!from || !to) return "";
  if (edge.kind !== "replication") {
    // co-masters and Galera peers: stacked roots, joined top to bottom
    const [top, bottom] = from.y < to.y ? [from, to] : [to, from];
    const x = top.x + W / 2;
    if (edge.kind === "galera") {
      // synchronous, every way: no arrow, a label saying what joins them
      const mid = (top.y + H + bottom.y) / 2;
      return `<path class="edge galera" d="M${x},${top.y + H} L${x},${bottom.y}"/><text class="edge-label galera" x="${x + 6}" y="${mid + 4}">Galera</text>`;
    }
    return `<path class="edge co" d="M${x},${top.y + H} L${x},${bottom.y}" marker-start="url(#arrow-start)" marker-end="url(#arrow)"/>`;
  }
  const x1 = from.x + W + (from.children.length ? 22 : 0);
  const y1 = from.y + H / 2;
  const x2 = to.x;
  const y2 = to.y + H / 2;
  const mid = (x1 + x2) / 2;
  return `<path class="edge" d="M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2 - 2},${y2}" marker-end="url(#arrow)"/>`;
}

/** @param {HTMLElement} root @param {string} name cluster name or alias @returns {Promise<() => void>} */
export async function clusterPage(root, name) {
  let clusterName = name;
  const title = h("h1", {}, `cluster ${name}`);
  const summary = h("p", { class: "summary", "data-testid": "cluster-summary" });
  const events = h("ol", { class: "events", "data-testid": "cluster-events", "aria-label": "recent events" });
  const svg = /** @type {SVGSVGElement} */ (document.createElementNS(SVG, "svg"));
  svg.setAttribute("data-testid", "topology");
  svg.setAttribute("role", "group");
  svg.setAttribute("aria-label", `replication tree of ${name}`);
  svg.innerHTML =
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>' +
    '<marker id="arrow-start" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>' +
    `<g class="edges"></g><g class="nodes"></g><g class="overlay"></g>`;
  const edgesLayer = /** @type {SVGGElement} */ (svg.querySelector(".edges"));
  const nodesLayer = /** @type {SVGGElement} */ (svg.querySelector(".nodes"));
  const overlay = /** @type {SVGGElement} */ (svg.querySelector(".overlay"));
  const panel = h("aside", { class: "panel", "data-testid": "panel", "aria-live": "polite" }, h("p", { class: "hint" }, "Select an instance (click, or Tab then Enter) to see it and act on it. Drag an instance onto another to relocate it; drag the round handle to move all its replicas."));
  const fit = h("button", { type: "button", "aria-pressed": "false", "data-testid": "fit" }, "Fit to window");
  const wrap = h("div", { class: "graph" }, svg);
  fit.addEventListener("click", () => {
    const on = fit.getAttribute("aria-pressed") !== "true";
    fit.setAttribute("aria-pressed", String(on));
    wrap.classList.toggle("fit", on);
  });
  root.replaceChildren(title, h("div", { class: "toolbar" }, summary, fit), h("div", { class: "cluster" }, wrap, panel), h("h2", {}, "Events"), events);

  /** @type {Map<string, SVGGElement>} */
  const nodes = new Map();
  /** @type {Map<string, string>} */
  const drawn = new Map(); // key → markup last drawn
  /** @type {any[]} */
  let instances = [];
  /** @type {import("../tree.js").Layout | null} */
  let lay = null;
  let selected = "";
  let closed = false;
  let loading = false;
  let again = false;

  const refresh = async () => {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    try {
      do {
        again = false;
        await load();
      } while (again && !closed);
    } finally {
      loading = false;
    }
  };

  /** @param {string} key @returns {Promise<any[]>} the instances of the cluster `key` is in */
  const clusterOf = async (key) => {
    try {
      return await get(`cluster/instance/${keyPath(key)}`);
    } catch {
      return [];
    }
  };

  /** After a change: now, and again as the servers' new state reaches the store (the event
   * stream would say so; without it, do not wait for the next poll). */
  const refreshSoon = () => {
    refresh();
    if (app.live !== "connected") for (const ms of [1000, 2500]) window.setTimeout(() => closed || refresh(), ms);
  };

  /** The cluster's instances. A failover names the cluster after its new master: when most of
   * the instances shown are no longer in the answer (or the name is gone), follow them. */
  const fetchCluster = async () => {
    /** @type {any[]} */
    let found = [];
    try {
      found = await get(`cluster/${encodeURIComponent(clusterName)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404 || instances.length === 0) throw error;
    }
    const now = new Set(found.map((i) => keyText(i.Key)));
    const gone = instances.map((i) => keyText(i.Key)).filter((key) => !now.has(key));
    if (gone.length > found.length) {
      for (const key of gone) {
        const elsewhere = await clusterOf(key);
        if (elsewhere.length > found.length) return elsewhere;
      }
    }
    if (!found.length) throw new ApiError(404, `no cluster ${clusterName} any more`);
    return found;
  };

  const load = async () => {
    const started = performance.now();
    let fetched;
    try {
      fetched = await Promise.all([
        fetchCluster(),
        get(`replication-analysis/${encodeURIComponent(clusterName)}`).catch(() => null),
        get("maintenance").catch(() => []),
      ]);
    } catch (error) {
      if (closed) return;
      summary.textContent = `cannot show ${clusterName}: ${error instanceof ApiError ? error.message : String(error)}`;
      summary.classList.add("error");
      return;
    }
    if (closed) return;
    summary.classList.remove("error");
    const [found, analysis, maintenance] = fetched;
    const followed = instances.length > 0; // a rename while shown, not the first answer
    instances = found;
    const current = instances[0]?.ClusterName;
    if (current && current !== clusterName) {
      // the hint was an alias, or a failover renamed the cluster: follow it without a reload
      if (followed) events.prepend(h("li", {}, `${new Date().toLocaleTimeString()} the cluster is now ${current}`));
      clusterName = current;
      history.replaceState(null, "", `#/cluster/${encodeURIComponent(current)}`);
      if (followed) again = true; // the analysis asked was the old name's
    }
    render(instances, analysis, maintenance, started, performance.now());
  };

  /** @param {any[]} list @param {any} analysis @param {any[]} maintenance
   * @param {number} started when the fetch began @param {number} arrived when the answers were in */
  const render = (list, analysis, maintenance, started, arrived) => {
    /** @type {Map<string, string[]>} */
    const problems = new Map();
    for (const entry of analysis?.Details ?? []) {
      const key = keyText(entry.AnalyzedInstanceKey);
      const codes = [];
      if (entry.Analysis && entry.Analysis !== "NoProblem") codes.push(entry.Analysis);
      for (const warning of entry.StructureAnalysis ?? []) codes.push(warning);
      if (codes.length) problems.set(key, [...(problems.get(key) ?? []), ...codes]);
    }
    for (const i of list) {
      const key = keyText(i.Key);
      const own = (i.Problems ?? []).filter((/** @type {string} */ p) => !(problems.get(key) ?? []).includes(p));
      if (own.length) problems.set(key, [...(problems.get(key) ?? []), ...own]);
    }
    const inMaintenance = new Set((Array.isArray(maintenance) ? maintenance : []).map((m) => keyText(m.Key)));
    lay = layout(
      list.map((i) => ({ key: keyText(i.Key), master: keyText(i.MasterKey), writable: !i.ReadOnly, galera: galeraId(i.Galera) })),
      { dx: DX, dy: DY },
    );
    const width = lay.width + MARGIN * 2;
    const height = lay.height + MARGIN * 2;
    svg.setAttribute("viewBox", `${-MARGIN} ${-MARGIN} ${width} ${height}`);
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    const current = lay;
    edgesLayer.innerHTML = current.edges.map((edge) => edgePath(current, edge)).join("");
    const items = [];
    for (const i of list) {
      const key = keyText(i.Key);
      const place = current.placed.get(key);
      if (!place) continue;
      const own = problems.get(key) ?? [];
      const galera = i.Galera ? galeraState(i.Galera, knownNodes(i.Galera, list)) : null;
      const d = describe(i, place, own, inMaintenance.has(key), galera);
      items.push({ i, key, place, own, d, markup: cardMarkup(d, own, place) });
    }
    if (nodes.size === 0) {
      // the first render: one parse for every card
      nodesLayer.innerHTML = items
        .map((it) => `<g class="instance" data-key="${esc(it.key)}" tabindex="0" role="button">${it.markup}</g>`)
        .join("");
      const cards = /** @type {NodeListOf<SVGGElement>} */ (nodesLayer.querySelectorAll("g.instance"));
      cards.forEach((node, n) => {
        nodes.set(items[n].key, node);
        drawn.set(items[n].key, items[n].markup);
      });
    }
    const seen = new Set();
    for (const { i, key, place, own, d, markup } of items) {
      seen.add(key);
      let node = nodes.get(key);
      if (!node) {
        node = /** @type {SVGGElement} */ (document.createElementNS(SVG, "g"));
        node.setAttribute("class", "instance");
        node.setAttribute("data-key", key);
        node.setAttribute("tabindex", "0");
        node.setAttribute("role", "button");
        nodes.set(key, node);
        nodesLayer.append(node);
      }
      const transform = `translate(${place.x},${place.y})`;
      if (node.getAttribute("transform") !== transform) node.setAttribute("transform", transform);
      node.setAttribute("data-master", keyText(i.MasterKey));
      node.setAttribute("data-role", place.role);
      node.setAttribute("aria-label", d.label);
      node.classList.toggle("problem", own.length > 0);
      node.classList.toggle("unreachable", !i.IsLastCheckValid);
      node.classList.toggle("downtimed", Boolean(i.IsDowntimed));
      node.classList.toggle("lagging", d.lag !== null && d.lag > 10);
      node.classList.toggle("writable", !i.ReadOnly);
      node.classList.toggle("galera", Boolean(d.galera));
      node.classList.toggle("galera-warn", Boolean(d.galera?.warn));
      node.classList.toggle("selected", key === selected);
      if (drawn.get(key) !== markup) {
        node.innerHTML = markup;
        drawn.set(key, markup);
        if (key === selected) panelStale = true;
      }
    }
    for (const [key, node] of nodes) {
      if (!seen.has(key)) {
        node.remove();
        nodes.delete(key);
        drawn.delete(key);
      }
    }
    const alias = list[0]?.SuggestedClusterAlias || "";
    title.textContent = `cluster ${clusterName}${alias && alias !== clusterName ? ` (${alias})` : ""}`;
    const troubled = [...problems.values()].filter((p) => p.length).length;
    summary.textContent = `${list.length} instances${galeraSummary(list)} · ${troubled ? `⚠ ${troubled} with problems` : "no problems"} · ${app.live === "connected" ? "live" : "refreshing every 5 s"}`;
    if (panelStale) followPanel();
    const scripted = performance.now() - arrived;
    requestAnimationFrame(() =>
      setTimeout(() => {
        /** @type {any} */ (window).__lastRender = {
          instances: list.length,
          ms: performance.now() - started, // fetch to painted (the contract's measure)
          renderMs: performance.now() - arrived, // answers in to painted
          scriptMs: scripted, // answers in to the DOM updated
          at: performance.now(),
        };
      }, 0),
    );
  };

  // --- the panel ------------------------------------------------------------------------------
  let panelStale = false;
  let panelDrawn = 0; // performance.now() of the last panel drawn
  let panelTimer = 0;
  /** The selected instance changed: its panel follows, at most every PANEL_EVERY_MS (the panel
   * asks the recovery worker for its drop checks), and not while the operator is using it (then
   * at the next change). */
  const followPanel = () => {
    if (!selected || closed || panelTimer || panelInUse()) return;
    const wait = PANEL_EVERY_MS - (performance.now() - panelDrawn);
    panelTimer = window.setTimeout(() => {
      panelTimer = 0;
      if (panelStale && selected && !closed && !panelInUse()) {
        panelStale = false;
        select(selected, false);
      }
    }, Math.max(0, wait));
  };
  /** Whether the operator is busy in the panel (focus in it, or a dialog open): then it is not
   * redrawn under them; it follows at the next change after. */
  const panelInUse = () => panel.contains(document.activeElement) || Boolean(document.querySelector("dialog[open]"));
  /** @param {string} key @param {boolean} focus */
  const select = async (key, focus) => {
    selected = key;
    panelDrawn = performance.now();
    panelStale = false;
    for (const [k, node] of nodes) node.classList.toggle("selected", k === key);
    panel.replaceChildren(h("p", {}, `loading ${key} …`));
    try {
      const content = await instancePanel(key, { instances, onChanged: () => { refreshSoon(); select(key, false); } });
      if (selected !== key || closed) return;
      panel.replaceChildren(content);
      if (focus) /** @type {HTMLElement | null} */ (content.querySelector("h2"))?.setAttribute("tabindex", "-1");
      if (focus) /** @type {HTMLElement | null} */ (content.querySelector("h2"))?.focus();
    } catch (error) {
      panel.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };

  // --- keyboard: Enter/Space selects; arrows walk the tree -------------------------------------
  svg.addEventListener("keydown", (event) => {
    const node = /** @type {Element} */ (event.target).closest?.("g.instance");
    if (!node || !lay) return;
    const key = node.getAttribute("data-key") ?? "";
    const place = lay.placed.get(key);
    if (!place) return;
    let next = "";
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(key, true);
      return;
    }
    if (event.key === "ArrowLeft") next = place.parent || place.coMaster;
    if (event.key === "ArrowRight") next = place.children[0] ?? "";
    if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      const order = [...lay.placed.values()].filter((p) => p.depth === place.depth).sort((a, b) => a.y - b.y);
      const at = order.findIndex((p) => p.key === key);
      next = order[at + (event.key === "ArrowUp" ? -1 : 1)]?.key ?? "";
    }
    if (next) {
      event.preventDefault();
      /** @type {SVGGElement | undefined} */ (nodes.get(next))?.focus();
    }
  });

  // --- drag and drop (pointer events) ---------------------------------------------------------
  /** @type {Drag | null} */
  let drag = null;

  /** @param {number} x @param {number} y @returns {DOMPoint} */
  const toSvg = (x, y) => {
    const matrix = svg.getScreenCTM();
    const point = new DOMPoint(x, y);
    return matrix ? point.matrixTransform(matrix.inverse()) : point;
  };

  const clearMarks = () => {
    for (const node of nodes.values()) {
      node.removeAttribute("data-drop");
      node.removeAttribute("data-dragging");
      node.classList.remove("hover");
      node.querySelector("title.drop-reason")?.remove();
    }
    overlay.replaceChildren();
    document.body.classList.remove("dragging");
  };

  /** @param {SVGGElement} node @param {string} state @param {string} reason */
  const mark = (node, state, reason) => {
    node.setAttribute("data-drop", state);
    let tip = node.querySelector("title.drop-reason");
    if (!tip) {
      tip = document.createElementNS(SVG, "title");
      tip.setAttribute("class", "drop-reason");
      node.prepend(tip);
    }
    tip.textContent = reason;
  };

  /** @param {Drag} current */
  const markTargets = (current) => {
    const what = current.mode === "replicas" ? `the replicas of ${current.source}` : current.source;
    for (const [key, node] of nodes) {
      if (key === current.source) continue;
      if (current.failed) {
        mark(node, "unknown", `not checked beforehand (${current.failed}); the server checks on drop`);
        continue;
      }
      if (!current.verdicts) {
        mark(node, "checking", "checking…");
        continue;
      }
      const verdict = current.verdicts.get(key);
      if (!verdict) mark(node, "unknown", `no verdict for ${key}; the server checks on drop`);
      else if (verdict.Allowed) mark(node, "allowed", `allowed: move ${what} below ${key}`);
      else mark(node, "refused", `refused: ${verdict.Reason || "not allowed"}`);
    }
  };

  /** @param {Drag} current */
  const beginDrag = (current) => {
    current.started = true;
    document.body.classList.add("dragging");
    nodes.get(current.source)?.setAttribute("data-dragging", "true");
    const ghost = /** @type {SVGGElement} */ (document.createElementNS(SVG, "g"));
    ghost.setAttribute("class", "ghost");
    ghost.innerHTML = `<rect width="${W}" height="28" rx="6"/><text x="10" y="18">${esc(current.mode === "replicas" ? `replicas of ${current.source}` : current.source)}</text>`;
    overlay.append(ghost);
    current.ghost = ghost;
    markTargets(current);
    const route = current.mode === "replicas" ? "can-relocate-replicas" : "can-relocate";
    get(`${route}/${keyPath(current.source)}`)
      .then((/** @type {Verdict[]} */ answer) => {
        current.verdicts = new Map(answer.map((entry) => [keyText(entry.Key), entry]));
      })
      .catch((error) => {
        current.failed = error instanceof ApiError ? `${error.status === 404 && !error.message.includes("instance") ? "no check endpoint" : error.message}` : String(error);
      })
      .finally(() => {
        if (drag === current) markTargets(current);
      });
  };

  svg.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    const target = /** @type {Element} */ (event.target);
    const node = target.closest("g.instance");
    if (!node) return;
    const handle = target.closest("g.handle");
    const source = node.getAttribute("data-key") ?? "";
    drag = { source, mode: handle ? "replicas" : "instance", x: event.clientX, y: event.clientY, pointer: event.pointerId, started: false, verdicts: null, failed: "", ghost: null };
  });

  svg.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.pointer) return;
    if (!drag.started) {
      if (Math.hypot(event.clientX - drag.x, event.clientY - drag.y) < DRAG_START_PX) return;
      if (!app.canChange) {
        notify(app.reason || "you may not change the topology", "error");
        drag = null;
        return;
      }
      beginDrag(drag);
    }
    const at = toSvg(event.clientX, event.clientY);
    drag.ghost?.setAttribute("transform", `translate(${at.x + 8},${at.y + 8})`);
    const over = document.elementFromPoint(event.clientX, event.clientY)?.closest("g.instance");
    for (const node of nodes.values()) node.classList.toggle("hover", node === over);
  });

  const finish = async (/** @type {PointerEvent} */ event) => {
    const current = drag;
    drag = null;
    if (!current) return;
    if (!current.started) {
      if (event.type === "pointerup") select(current.source, false);
      return;
    }
    const over = document.elementFromPoint(event.clientX, event.clientY)?.closest("g.instance");
    const target = over?.getAttribute("data-key") ?? "";
    const state = over?.getAttribute("data-drop") ?? "";
    const reason = over?.querySelector("title.drop-reason")?.textContent ?? "";
    clearMarks();
    if (event.type !== "pointerup" || !target || target === current.source) return;
    if (state === "refused") {
      notify(`${current.mode === "replicas" ? "relocate-replicas" : "relocate"} ${current.source} below ${target}: ${reason}`, "error");
      return;
    }
    await drop(current, target, state === "allowed" ? reason : reason.replace(/^not checked beforehand/, "Not checked beforehand"));
  };
  svg.addEventListener("pointerup", finish);
  svg.addEventListener("pointercancel", finish);
  const escape = (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Escape" && drag) {
      drag = null;
      clearMarks();
    }
  };
  document.addEventListener("keydown", escape);

  /** The operations a drop may mean, relocate first (what the check was about).
   * @param {Drag} current @param {string} target @param {string} verdict */
  const drop = async (current, target, verdict) => {
    const places = lay?.placed;
    const source = places?.get(current.source);
    const masterOf = (/** @type {string} */ key) => places?.get(key)?.parent ?? "";
    const s = keyPath(current.source);
    const t = keyPath(target);
    /** @type {{value: string, label: string}[]} */
    const choices = [];
    if (current.mode === "instance") {
      choices.push({ value: `relocate/${s}/${t}`, label: `relocate ${current.source} below ${target}` });
      if (source && masterOf(source.parent) === target) choices.push({ value: `move-up/${s}`, label: `move-up: ${current.source} replicates from its master's master ${target}` });
      if (source && source.parent && masterOf(target) === source.parent) choices.push({ value: `move-below/${s}/${t}`, label: `move-below: below its sibling ${target}` });
      if (source && source.parent === target) {
        choices.push({ value: `repoint/${s}/${t}`, label: `repoint ${current.source} to ${target} (its master) again` });
        choices.push({ value: `take-siblings/${s}`, label: `take-siblings: the other replicas of ${target} move below ${current.source}` });
        if (!masterOf(target)) choices.push({ value: `make-co-master/${s}`, label: `make-co-master: ${current.source} and ${target} replicate from each other` });
      }
    } else {
      choices.push({ value: `relocate-replicas/${s}/${t}`, label: `relocate-replicas: every replica of ${current.source} below ${target}` });
      if (source && source.parent === target) choices.push({ value: `move-up-replicas/${s}`, label: `move-up-replicas: the replicas of ${current.source} move up below ${target}` });
      if (source && source.children.includes(target)) choices.push({ value: `take-siblings/${t}`, label: `take-siblings: ${target} takes its siblings` });
    }
    const chosen = await confirmAction({
      title: current.mode === "replicas" ? `Move the replicas of ${current.source} below ${target}?` : `Move ${current.source} below ${target}?`,
      body: verdict,
      choices,
      okLabel: "Move",
    });
    if (chosen === null) {
      notify("nothing changed", "info");
      return;
    }
    if (await run(chosen)) refreshSoon();
  };

  const unsubscribe = onLive((event) => {
    if (event.type === "poll") return void refresh();
    if (event.type === "changed") {
      const data = event.data ?? {};
      const keys = new Set(instances.map((i) => keyText(i.Key)));
      if ((data.Clusters ?? []).includes(clusterName) || (data.Instances ?? []).some((/** @type {string} */ k) => keys.has(k)) || !data.Clusters) refresh();
      return;
    }
    if (event.type === "recovery" || event.type === "analysis") {
      const data = event.data ?? {};
      const info = data.data ?? {}; // RecoveryEvent (CloudEvents): the recovery in .data
      const keys = new Set(instances.map((i) => keyText(i.Key)));
      const about = [info.cluster, info.cluster_alias, data.subject, data.cluster].filter(Boolean);
      const ours = about.length === 0 || about.includes(clusterName) || about.includes(name) || keys.has(info.failed);
      if (!ours) return;
      if (event.type === "recovery") {
        const phase = data.phase ?? String(data.type ?? "").split(".").pop();
        const parts = [
          `${new Date().toLocaleTimeString()} recovery ${phase}`,
          info.analysis ? `${info.analysis} of ${info.failed}` : info.failed,
          info.successor ? `→ ${info.successor} promoted` : "",
          info.fencing_token ? `(fencing token ${info.fencing_token})` : "",
          info.reason ? `: ${info.reason}` : "",
        ];
        events.prepend(h("li", { class: "recovery", "data-phase": phase }, parts.filter(Boolean).join(" ")));
      }
      refresh();
    }
  });

  await refresh();
  return () => {
    closed = true;
    window.clearTimeout(panelTimer);
    unsubscribe();
    document.removeEventListener("keydown", escape);
  };
}
