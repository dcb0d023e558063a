// @ts-check
/** A Galera node's wsrep state in words (pure: no DOM), as the cluster's cards, the instance
 * panel and the clusters list say it. The instance JSON's `Galera` object is null for a server
 * not running wsrep. */

import { keyText } from "./api.js";

/** Which Galera cluster a node is of: its state UUID, as the topology groups them (two Galera
 * clusters may share a wsrep cluster name); "" for a server not running wsrep.
 * @param {any} galera an instance's Galera object, or null @returns {string} */
export function galeraId(galera) {
  return galera ? galera.ClusterStateUUID || galera.ClusterName : "";
}

/** How many nodes its cluster is known to have: those shown of the same Galera cluster and the
 * members the node names. A node stopped cleanly leaves the others' member lists, yet it is
 * still shown: the survivors then say 2/3, not 2/2.
 * @param {any} galera an instance's Galera object @param {any[]} instances shown with it
 * @returns {number} */
export function knownNodes(galera, instances) {
  const keys = new Set((galera.Members ?? []).map(keyText));
  for (const i of instances) {
    if (galeraId(i.Galera) === galeraId(galera)) keys.add(keyText(i.Key));
  }
  return Math.max(keys.size, Number(galera.ClusterSize ?? 0));
}

/** "Synced · Primary 3/3": the local state, the component and its size of the known nodes; a
 * warning (the caller shows ⚠ and its warning style) when the node is not Synced, not in the
 * Primary component, not ready, or its component lacks a known node.
 * @param {any} galera an instance's Galera object @param {number} known see knownNodes
 * @returns {{text: string, warn: boolean}} */
export function galeraState(galera, known) {
  const size = Number(galera.ClusterSize ?? 0);
  const warn = !galera.IsSynced || !galera.IsPrimaryComponent || !galera.Ready || size < known;
  const text = [
    galera.LocalStateComment || "state ?",
    `${galera.ClusterStatus || "?"} ${size}/${known}`,
    galera.Desync && !/desync/i.test(galera.LocalStateComment ?? "") ? "desync" : "", // said once
    galera.Ready ? "" : "not ready",
    galera.Connected ? "" : "not connected",
  ]
    .filter(Boolean)
    .join(" · ");
  return { text, warn };
}
