// @ts-check
/** The page's one mutable state object: who the user is and how live updates arrive. */

/**
 * @typedef {{User: string, Role: string, CanChange: boolean, Reason: string}} WhoAmI
 * @typedef {{
 *   whoami: WhoAmI | null,
 *   canChange: boolean,
 *   reason: string,
 *   live: "connecting" | "connected" | "reconnecting" | "polling",
 *   globalRecoveries: "enabled" | "disabled" | "unknown",
 * }} AppState
 */

/** @type {AppState} */
export const app = {
  whoami: null, // null: /api/whoami not available (the API still refuses what it must)
  canChange: true,
  reason: "",
  live: "connecting",
  globalRecoveries: "unknown",
};
