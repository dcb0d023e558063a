// @ts-check
/** #/problems: replication analysis of every cluster (orchestrator's clusters-analysis). */

import { ApiError, get, keyText } from "../api.js";
import { clusterLink, h, instanceLink, table } from "../dom.js";
import { onLive, throttled } from "../live.js";

/** @param {HTMLElement} root @returns {Promise<() => void>} */
export async function problemsPage(root) {
  const body = h("div", { "data-testid": "problems" }, h("p", {}, "loading …"));
  root.replaceChildren(h("h1", {}, "Problems"), body);
  const load = async () => {
    try {
      const answer = await get("replication-analysis");
      const entries = (answer.Details ?? []).filter((/** @type {any} */ e) => e.Analysis !== "NoProblem" || (e.StructureAnalysis ?? []).length);
      body.replaceChildren(
        entries.length
          ? table(
              [
                ["Problem", (e) => h("strong", { class: "code" }, `⚠ ${e.Analysis}`)],
                ["Meaning", (e) => e.Description ?? ""],
                ["Instance", (e) => instanceLink(keyText(e.AnalyzedInstanceKey))],
                ["Cluster", (e) => clusterLink(e.ClusterDetails?.ClusterName ?? "", e.ClusterDetails?.ClusterAlias)],
                ["Structure", (e) => (e.StructureAnalysis ?? []).join(", ") || "—"],
                ["Replicas", (e) => `${e.CountValidReplicatingReplicas}/${e.CountReplicas} replicating`],
                ["Downtimed", (e) => (e.IsDowntimed ? `⏸ until ${e.DowntimeEndTimestamp}` : "no")],
              ],
              /** @type {any[]} */ (entries),
              { class: "list" },
            )
          : h("p", { class: "ok" }, "✓ No problem in any cluster."),
      );
    } catch (error) {
      body.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };
  await load();
  const reload = throttled(load, 1000);
  return onLive((event) => {
    if (event.type !== "audit") reload();
  });
}
