// The REST API client: bearer token in the Authorization header, JSON in and out, errors as APIError.
import { app } from "./state.js";

export class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + app.token };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch (_) { /* empty body */ }
  if (!response.ok) {
    const error = data.error || {};
    throw new APIError(response.status, error.code || "http_" + response.status, error.message || response.statusText);
  }
  return data;
}
