// @ts-check
/** The replication tree's layout (pure: no DOM). Masters at the left (depth 0), replicas to
 * the right, each subtree stacked below the previous one, a parent centred on its children
 * (a small tidy tree). Co-masters (two instances replicating from each other) are both
 * roots, side by side vertically, joined by a two-way edge. The nodes of one Galera cluster
 * (synchronous peers, none the master of another) are roots too, adjacent, joined by a Galera
 * link; each node's async replicas hang below it as usual. */

/**
 * @typedef {{key: string, master: string, writable: boolean, galera: string}} TreeInput
 *   galera: which Galera cluster the node is of (galeraId), "" for a server not running wsrep
 * @typedef {"master" | "co-master" | "galera" | "intermediate" | "replica" | "orphan"} Role
 * @typedef {{
 *   key: string, x: number, y: number, depth: number, parent: string,
 *   role: Role, coMaster: string, children: string[],
 * }} Placed
 * @typedef {{from: string, to: string, kind: "replication" | "co-master" | "galera"}} Edge
 * @typedef {{placed: Map<string, Placed>, edges: Edge[], width: number, height: number}} Layout
 */

/** host:port keys in a human order (hosts alphabetically, ports numerically).
 * @param {string} a @param {string} b @returns {number} */
export function compareKeys(a, b) {
  const ia = a.lastIndexOf(":");
  const ib = b.lastIndexOf(":");
  const host = a.slice(0, ia).localeCompare(b.slice(0, ib));
  return host || Number(a.slice(ia + 1)) - Number(b.slice(ib + 1));
}

/**
 * @param {TreeInput[]} nodes
 * @param {{dx: number, dy: number}} spacing column width, row height
 * @returns {Layout}
 */
export function layout(nodes, spacing) {
  /** @type {Map<string, TreeInput>} */
  const byKey = new Map(nodes.map((node) => [node.key, node]));
  /** @type {Map<string, string>} */
  const parent = new Map();
  for (const node of nodes) {
    parent.set(node.key, node.master && node.master !== node.key && byKey.has(node.master) ? node.master : "");
  }
  // break cycles (co-masters): the writable member (else the smallest key) becomes a root
  /** @type {Map<string, string>} */
  const coMaster = new Map();
  /** @type {Set<string>} */
  const cycleRoots = new Set(); // masters whose own master is in their subtree
  for (const node of nodes) {
    const seen = [];
    let at = node.key;
    while (at && !seen.includes(at) && seen.length <= nodes.length) {
      seen.push(at);
      at = parent.get(at) ?? "";
    }
    if (!at) continue; // reached a root
    const cycle = seen.slice(seen.indexOf(at));
    const root = cycle.find((key) => byKey.get(key)?.writable) ?? [...cycle].sort(compareKeys)[0];
    const other = parent.get(root) ?? "";
    parent.set(root, "");
    cycleRoots.add(root);
    if (other && parent.get(other) === root) {
      parent.set(other, ""); // a two-member cycle: both masters, side by side
      coMaster.set(root, other);
      coMaster.set(other, root);
    }
  }
  /** @type {Map<string, string[]>} */
  const children = new Map(nodes.map((node) => [node.key, []]));
  for (const [key, master] of parent) if (master) children.get(master)?.push(key);
  for (const list of children.values()) list.sort(compareKeys);
  const roots = [...parent].filter(([, master]) => !master).map(([key]) => key);
  /** @type {Map<string, string>} */
  const galeraFirst = new Map(); // Galera cluster → its smallest root
  for (const key of roots) {
    const name = byKey.get(key)?.galera ?? "";
    const first = galeraFirst.get(name);
    if (name && (!first || compareKeys(key, first) < 0)) galeraFirst.set(name, key);
  }
  /** @param {string} key @returns {string} the root a group (co-masters, Galera peers) sorts by */
  const groupOf = (key) => {
    if (coMaster.has(key)) return [key, coMaster.get(key) ?? ""].sort(compareKeys)[0];
    return galeraFirst.get(byKey.get(key)?.galera ?? "") ?? key;
  };
  // co-masters adjacent, the writable one first; Galera peers adjacent; then the other roots
  roots.sort((a, b) => {
    const ga = groupOf(a);
    const gb = groupOf(b);
    if (ga !== gb) return compareKeys(ga, gb);
    const writable = Number(Boolean(byKey.get(b)?.writable)) - Number(Boolean(byKey.get(a)?.writable));
    return coMaster.has(a) ? writable : compareKeys(a, b);
  });

  /** @type {Map<string, Placed>} */
  const placed = new Map();
  let row = 0;
  let deepest = 0;
  /** @param {string} key @param {number} depth @returns {number} the row (may be fractional) */
  const place = (key, depth) => {
    deepest = Math.max(deepest, depth);
    const kids = children.get(key) ?? [];
    let y;
    if (kids.length === 0) {
      y = row;
      row += 1;
    } else {
      const rows = kids.map((kid) => place(kid, depth + 1));
      y = (rows[0] + rows[rows.length - 1]) / 2;
    }
    const master = parent.get(key) ?? "";
    const declared = byKey.get(key)?.master ?? "";
    /** @type {Role} */
    let role = "replica";
    if (coMaster.has(key)) role = "co-master";
    else if (!master && declared && declared !== key && !cycleRoots.has(key)) role = "orphan";
    else if (!master) role = byKey.get(key)?.galera ? "galera" : "master";
    else if (kids.length > 0) role = "intermediate";
    placed.set(key, {
      key,
      x: depth * spacing.dx,
      y: y * spacing.dy,
      depth,
      parent: master,
      role,
      coMaster: coMaster.get(key) ?? "",
      children: kids,
    });
    return y;
  };
  const visited = new Set();
  for (const root of roots) {
    if (visited.has(root)) continue;
    visited.add(root);
    place(root, 0);
  }
  /** @type {Edge[]} */
  const edges = [];
  for (const node of placed.values()) {
    if (node.parent) edges.push({ from: node.parent, to: node.key, kind: "replication" });
    if (node.coMaster && compareKeys(node.key, node.coMaster) < 0) {
      edges.push({ from: node.key, to: node.coMaster, kind: "co-master" });
    }
  }
  edges.push(...galeraLinks(roots, placed, byKey));
  return { placed, edges, width: (deepest + 1) * spacing.dx, height: Math.max(row, 1) * spacing.dy };
}

/** Each Galera peer at the top linked to the next one of its Galera cluster (they are adjacent).
 * @param {string[]} roots in drawing order @param {Map<string, Placed>} placed
 * @param {Map<string, TreeInput>} byKey @returns {Edge[]} */
function galeraLinks(roots, placed, byKey) {
  /** @type {Edge[]} */
  const links = [];
  const peers = roots.filter((key) => placed.get(key)?.role === "galera");
  for (let n = 1; n < peers.length; n += 1) {
    if (byKey.get(peers[n])?.galera === byKey.get(peers[n - 1])?.galera) {
      links.push({ from: peers[n - 1], to: peers[n], kind: "galera" });
    }
  }
  return links;
}
