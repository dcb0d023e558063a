// @ts-check
/** The fetch wrapper: URLs relative to where the page is served (URLPrefix), JSON in and out,
 * orchestrator's envelope errors turned into ApiError with the API's Message. */

/**
 * @typedef {{Hostname: string, Port: number}} Key
 * @typedef {{Code: string, Message: string, Details: any}} Envelope
 */

const meta = document.querySelector('meta[name="orchestrator-prefix"]');
/** URLPrefix as the server saw it ("" or e.g. "/orchestrator"). */
export const prefix = (meta && meta.getAttribute("content")) || "";

export class ApiError extends Error {
  /** @param {number} status @param {string} message */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** @param {string} path e.g. "cluster/x" @returns {string} */
export function apiUrl(path) {
  return `${prefix}/api/${path}`;
}

/** @param {Response} response @returns {Promise<ApiError>} */
async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && typeof body.Message === "string" && body.Message) message = body.Message;
    else if (body && typeof body.detail === "string") message = body.detail;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, message);
}

/** GET a read route; its JSON. @param {string} path @returns {Promise<any>} */
export async function get(path) {
  let response;
  try {
    response = await fetch(apiUrl(path), { headers: { Accept: "application/json" } });
  } catch (error) {
    throw new ApiError(0, `the API did not answer: ${String(error)}`);
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** POST a route that changes something; its envelope (an ERROR envelope throws).
 * @param {string} path @returns {Promise<Envelope>} */
export async function change(path) {
  let response;
  try {
    response = await fetch(apiUrl(path), { method: "POST", headers: { Accept: "application/json" } });
  } catch (error) {
    throw new ApiError(0, `the API did not answer: ${String(error)}`);
  }
  if (!response.ok) throw await failure(response);
  const body = await response.json();
  if (body && body.Code === "ERROR") throw new ApiError(response.status, body.Message);
  return body;
}

/** @param {Key | null | undefined} key @returns {string} "host:port" ("" for none) */
export function keyText(key) {
  return key && key.Hostname ? `${key.Hostname}:${key.Port}` : "";
}

/** "host:port" → "host/port" as the routes take it (each part URL-encoded).
 * @param {string} text @returns {string} */
export function keyPath(text) {
  const at = text.lastIndexOf(":");
  return `${encodeURIComponent(text.slice(0, at))}/${encodeURIComponent(text.slice(at + 1))}`;
}

/** @param {string} text @returns {string} one URL path segment */
export function seg(text) {
  return encodeURIComponent(text);
}
