// @ts-check
/** #/clusters: every cluster with alias, master, instances, problems, downtime and recovery
 * state; a filter over all of it. */

import { ApiError, get, keyText } from "../api.js";
import { clusterLink, h, instanceLink } from "../dom.js";
import { onLive, throttled } from "../live.js";

/** @param {HTMLElement} root @param {URLSearchParams} query @returns {Promise<() => void>} */
export async function clustersPage(root, query) {
  const filter = /** @type {HTMLInputElement} */ (
    h("input", { type: "search", "data-testid": "filter", placeholder: "filter: name, alias, instance, problem…", value: query.get("q") ?? "", "aria-label": "filter clusters" })
  );
  const body = h("div", { "data-testid": "clusters" }, h("p", {}, "loading …"));
  root.replaceChildren(h("h1", {}, "Clusters"), h("div", { class: "toolbar" }, filter), body);
  /** @type {{name: string, text: string, row: HTMLElement}[]} */
  let rows = [];
  const apply = () => {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let visible = 0;
    for (const { text, row } of rows) {
      const show = words.every((word) => text.includes(word));
      row.hidden = !show;
      if (show) visible += 1;
    }
    const count = body.querySelector(".count");
    if (count) count.textContent = `${visible} of ${rows.length} clusters`;
  };
  filter.addEventListener("input", apply);

  const load = async () => {
    let answers;
    try {
      answers = await Promise.all([
        get("clusters-info"),
        get("masters").catch(() => []),
        get("replication-analysis").catch(() => ({ Details: [] })),
        get("downtimed").catch(() => []),
        get("audit-recovery").catch(() => []),
        get("blocked-recoveries").catch(() => []),
      ]);
    } catch (error) {
      body.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
      return;
    }
    const [clusters, masters, analysis, downtimed, recoveries, blocked] = answers;
    /** @type {Map<string, string[]>} */
    const mastersOf = new Map();
    /** @type {Map<string, string>} */
    const galeraOf = new Map(); // cluster → the wsrep cluster its master is a node of
    for (const m of masters) {
      mastersOf.set(m.ClusterName, [...(mastersOf.get(m.ClusterName) ?? []), keyText(m.Key)]);
      if (m.Galera) galeraOf.set(m.ClusterName, m.Galera.ClusterName);
    }
    /** @type {Map<string, any[]>} */
    const problems = new Map();
    for (const entry of analysis.Details ?? []) {
      const name = entry.ClusterDetails?.ClusterName ?? "";
      if (entry.Analysis === "NoProblem" && !(entry.StructureAnalysis ?? []).length) continue;
      problems.set(name, [...(problems.get(name) ?? []), entry]);
    }
    /** @param {any[]} list @param {string} name */
    const count = (list, name) => list.filter((item) => item.ClusterName === name).length;
    rows = [];
    const tableRows = clusters.map((/** @type {any} */ c) => {
      const name = c.ClusterName;
      const own = problems.get(name) ?? [];
      const active = recoveries.filter((/** @type {any} */ r) => r.IsActive && (r.AnalysisEntry?.ClusterDetails?.ClusterName ?? "") === name);
      const unacked = recoveries.filter((/** @type {any} */ r) => !r.Acknowledged && !r.IsActive && (r.AnalysisEntry?.ClusterDetails?.ClusterName ?? "") === name);
      const recovery = [
        active.length ? `⟳ ${active.length} active` : "",
        unacked.length ? `${unacked.length} to acknowledge` : "",
        count(blocked, name) ? `${count(blocked, name)} blocked` : "",
        c.HasAutomatedMasterRecovery ? "automated" : "manual",
      ].filter(Boolean).join(" · ");
      const down = count(downtimed, name);
      const problemCell = own.length
        ? h("ul", { class: "problems" }, ...own.map((entry) => h("li", {}, h("strong", {}, `⚠ ${entry.Analysis}`), ` ${keyText(entry.AnalyzedInstanceKey)}: ${entry.Description ?? ""}`)))
        : "none";
      const row = h(
        "tr",
        { "data-cluster": name, class: own.length ? "problem" : "" },
        h("td", {}, clusterLink(name), ...(galeraOf.has(name) ? [" ", h("span", { class: "tag galera", title: `Galera cluster ${galeraOf.get(name)}` }, "Galera")] : [])),
        h("td", {}, c.ClusterAlias && c.ClusterAlias !== name ? c.ClusterAlias : "—"),
        h("td", {}, ...(mastersOf.get(name) ?? []).flatMap((key, n) => [n ? ", " : "", instanceLink(key)])),
        h("td", { class: "num" }, String(c.CountInstances)),
        h("td", {}, problemCell),
        h("td", {}, down ? `⏸ ${down} downtimed` : "—"),
        h("td", {}, recovery),
      );
      rows.push({ name, text: row.textContent?.toLowerCase() ?? "", row });
      return row;
    });
    body.replaceChildren(
      h("p", { class: "count" }),
      clusters.length
        ? h(
            "table",
            { class: "list" },
            h("thead", {}, h("tr", {}, ...["Cluster", "Alias", "Master", "Instances", "Problems", "Downtime", "Recovery"].map((t) => h("th", { scope: "col" }, t)))),
            h("tbody", {}, ...tableRows),
          )
        : h("p", {}, "No cluster yet: discover an instance (Discover page)."),
    );
    apply();
  };
  await load();
  const reload = throttled(load, 1000);
  return onLive((event) => {
    if (event.type !== "audit") reload();
  });
}
