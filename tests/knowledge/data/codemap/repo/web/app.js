function renderWidget(element) {
  return element;
}

class Widget {
  draw() {}
}
