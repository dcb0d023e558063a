// @ts-check
/** #/recoveries: active and recent recoveries (acknowledge them), blocked ones, detections. */

import { ApiError, get, keyText } from "../api.js";
import { confirmAndRun } from "../dialogs.js";
import { actionButton, clusterLink, h, instanceLink, table } from "../dom.js";
import { onLive, throttled } from "../live.js";

/** @param {HTMLElement} root @returns {Promise<() => void>} */
export async function recoveriesPage(root) {
  const comment = /** @type {HTMLInputElement} */ (h("input", { placeholder: "acknowledge comment", size: 30, "data-testid": "ack-comment", "aria-label": "acknowledge comment" }));
  const active = h("div", { "data-testid": "recoveries-active" });
  const recent = h("div", { "data-testid": "recoveries-recent" });
  const blocked = h("div", { "data-testid": "recoveries-blocked" });
  const detections = h("div", { "data-testid": "detections" });
  const text = () => encodeURIComponent(comment.value.trim() || "acknowledged from the web UI");
  /** @param {string} path @param {string} title */
  const ack = async (path, title) => {
    if (await confirmAndRun({ title }, `${path}?comment=${text()}`)) load();
  };
  root.replaceChildren(
    h("h1", {}, "Recoveries"),
    h("div", { class: "toolbar" }, comment, actionButton("Acknowledge all", "ack-all-recoveries", () => ack("ack-all-recoveries", "Acknowledge every recovery?"))),
    h("h2", {}, "Active"),
    active,
    h("h2", {}, "Recent"),
    recent,
    h("h2", {}, "Blocked"),
    blocked,
    h("h2", {}, "Failure detections"),
    detections,
  );
  /** @param {any} r */
  const cluster = (r) => r.AnalysisEntry?.ClusterDetails?.ClusterName ?? "";
  /** @param {any} r @returns {string} the failed instance, or the first one taking part */
  const failed = (r) => keyText(r.AnalysisEntry?.AnalyzedInstanceKey) || keyText((r.ParticipatingInstanceKeys ?? [])[0]);
  /** @type {Array<[string, (r: any) => Node | string]>} */
  const columns = [
    ["Id", (r) => String(r.Id)],
    ["Started", (r) => r.RecoveryStartTimestamp || "—"],
    ["Analysis", (r) => h("strong", {}, r.AnalysisEntry?.Analysis || r.Type || "—")],
    ["Failed", (r) => (failed(r) ? instanceLink(failed(r)) : "—")],
    ["Participants", (r) => (r.ParticipatingInstanceKeys ?? []).map(keyText).join(", ") || "—"],
    ["Cluster", (r) => (cluster(r) ? clusterLink(cluster(r)) : "—")],
    ["Successor", (r) => (keyText(r.SuccessorKey) ? instanceLink(keyText(r.SuccessorKey)) : "none")],
    ["Worker (token)", (r) => `${r.ProcessingNodeHostname || "—"}${r.ProcessingNodeToken ? ` (${r.ProcessingNodeToken})` : ""}`],
    ["Result", (r) => (r.IsActive ? "⟳ running" : r.IsSuccessful ? "✓ successful" : `✖ failed${(r.AllErrors ?? []).length ? `: ${r.AllErrors.join("; ")}` : ""}`)],
    ["Acknowledged", (r) => (r.Acknowledged ? `by ${r.AcknowledgedBy}: ${r.AcknowledgedComment}` : actionButton("Acknowledge", "ack-recovery", () => ack(`ack-recovery/${r.Id}`, `Acknowledge recovery ${r.Id}?`)))],
  ];
  /** @param {HTMLElement} into @param {() => Promise<HTMLElement>} build */
  const fill = async (into, build) => {
    try {
      into.replaceChildren(await build());
    } catch (error) {
      into.replaceChildren(h("p", { class: "error" }, error instanceof ApiError ? error.message : String(error)));
    }
  };
  const load = async () => {
    const recoveries = get("audit-recovery");
    await Promise.all([
      fill(active, async () => {
        const list = (await recoveries).filter((/** @type {any} */ r) => r.IsActive);
        return list.length ? table(columns, list, { class: "list" }) : h("p", {}, "No recovery running.");
      }),
      fill(recent, async () => {
        const list = (await recoveries).filter((/** @type {any} */ r) => !r.IsActive);
        return list.length ? table(columns, list, { class: "list" }) : h("p", {}, "No recent recovery.");
      }),
      fill(blocked, async () => {
        const list = await get("blocked-recoveries");
        return list.length
          ? table(
              [
                ["Failed", (b) => instanceLink(keyText(b.FailedInstanceKey))],
                ["Cluster", (b) => clusterLink(b.ClusterName)],
                ["Analysis", (b) => b.Analysis],
                ["Last blocked", (b) => b.LastBlockedTimestamp],
                ["Blocked by recovery", (b) => String(b.BlockingRecoveryId)],
              ],
              /** @type {any[]} */ (list),
              { class: "list" },
            )
          : h("p", {}, "Nothing blocked.");
      }),
      fill(detections, async () => {
        const list = await get("audit-failure-detection");
        return list.length
          ? table(
              [
                ["Id", (d) => String(d.Id)],
                ["Detected", (d) => d.RecoveryStartTimestamp || d.DetectionTimestamp || "—"],
                ["Analysis", (d) => d.AnalysisEntry?.Analysis || d.Type || "—"],
                ["Instance", (d) => (keyText(d.AnalysisEntry?.AnalyzedInstanceKey) ? instanceLink(keyText(d.AnalysisEntry.AnalyzedInstanceKey)) : "—")],
                ["Cluster", (d) => (d.AnalysisEntry?.ClusterDetails?.ClusterName ? clusterLink(d.AnalysisEntry.ClusterDetails.ClusterName) : "—")],
                ["Worker (token)", (d) => `${d.ProcessingNodeHostname || "—"}${d.ProcessingNodeToken ? ` (${d.ProcessingNodeToken})` : ""}`],
              ],
              /** @type {any[]} */ (list),
              { class: "list" },
            )
          : h("p", {}, "No failure detected recently.");
      }),
    ]);
  };
  await load();
  const reload = throttled(load, 1000);
  return onLive((event) => {
    if (event.type === "recovery" || event.type === "poll" || event.type === "analysis") reload();
  });
}
