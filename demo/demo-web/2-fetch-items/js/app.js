// Render the item list and handle the "new item" form.
const list = document.getElementById("items");
const status = document.getElementById("status");
const form = document.getElementById("new-item");

function render(items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.textContent = item.title;
      li.classList.toggle("done", item.done);
      return li;
    }),
  );
  status.textContent = items.length ? "" : "Nothing to do.";
}

async function refresh() {
  try {
    render(await api.listItems());
  } catch (error) {
    status.textContent = "Could not load items.";
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const title = form.elements.title.value.trim();
  if (!title) return;
  await api.addItem(title);
  form.reset();
  refresh();
});

refresh();
