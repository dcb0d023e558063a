// @ts-check
/** Live updates: the API's server-sent events (/api/stream); while the stream is not open, a
 * "poll" event every 5 s so pages refetch instead. */

import { apiUrl } from "./api.js";
import { app } from "./state.js";

/**
 * @typedef {"changed" | "recovery" | "analysis" | "audit" | "poll"} LiveType
 * @typedef {{type: LiveType, data: any}} LiveEvent
 * @typedef {(event: LiveEvent) => void} Listener
 */

const POLL_MS = 5000;
const RETRY_CLOSED_MS = 30000; // the stream refused (e.g. 404 on an older API): try again later
const TYPES = /** @type {const} */ (["changed", "recovery", "analysis", "audit"]);

/** @type {Set<Listener>} */
const listeners = new Set();

/** @param {Listener} listener @returns {() => void} unsubscribe */
export function onLive(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** @param {LiveEvent} event */
function emit(event) {
  for (const listener of [...listeners]) {
    try {
      listener(event);
    } catch (error) {
      console.warn("live listener failed", error);
    }
  }
}

/** @param {AppState["live"]} state */
function show(state) {
  app.live = state;
  document.body.dataset.live = state;
  const label = document.getElementById("live");
  if (label) {
    label.textContent = state === "connected" ? "● live" : state === "polling" ? "○ polling every 5 s" : "○ " + state;
    label.title =
      state === "connected" ? "live updates from the server's event stream" : "no event stream: the page refetches every 5 s";
  }
}
/** @typedef {import("./state.js").AppState} AppState */

/** Open the stream (once per page load). */
export function startLive() {
  /** @type {number | undefined} */
  let poller;
  const poll = () => {
    if (poller === undefined) poller = window.setInterval(() => emit({ type: "poll", data: null }), POLL_MS);
  };
  const stopPolling = () => {
    if (poller !== undefined) window.clearInterval(poller);
    poller = undefined;
  };
  const connect = () => {
    show("connecting");
    const source = new EventSource(apiUrl("stream"));
    source.onopen = () => {
      show("connected");
      stopPolling();
      emit({ type: "poll", data: null }); // whatever happened while we were away
    };
    source.onerror = () => {
      poll();
      if (source.readyState === EventSource.CLOSED) {
        show("polling");
        window.setTimeout(connect, RETRY_CLOSED_MS);
      } else {
        show("reconnecting");
      }
    };
    for (const type of TYPES) {
      source.addEventListener(type, (message) => {
        let data = null;
        try {
          data = JSON.parse(/** @type {MessageEvent} */ (message).data);
        } catch {
          data = null;
        }
        emit({ type, data });
      });
    }
  };
  connect();
}

/** `run` at most once per `ms`, the last call of a burst always honoured.
 * @param {() => unknown} run @param {number} ms @returns {() => void} */
export function throttled(run, ms) {
  let last = 0;
  /** @type {number | undefined} */
  let pending;
  return () => {
    if (pending !== undefined) return;
    const wait = Math.max(0, last + ms - performance.now());
    pending = window.setTimeout(() => {
      pending = undefined;
      last = performance.now();
      run();
    }, wait);
  };
}
