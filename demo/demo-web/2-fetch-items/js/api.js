// A thin client for the items service, mounted under /api by nginx.
const API_BASE = window.ITEMS_API || "/api";

async function request(path, options = {}) {
  const response = await fetch(API_BASE + path, {
    headers: { "Content-Type": "application/json" },
    ...options,
  });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  return response.json();
}

const api = {
  listItems: () => request("/items").then((body) => body.items),
  addItem: (title) => request("/items", { method: "POST", body: JSON.stringify({ title }) }),
};
