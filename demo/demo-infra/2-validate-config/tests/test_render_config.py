import json
import unittest

from scripts.render_config import ROOT, render, validate


class RenderTests(unittest.TestCase):
    def test_fills_placeholders(self):
        self.assertEqual(render("listen {{ listen }};", {"listen": 80}), "listen 80;")

    def test_a_missing_value_is_an_error(self):
        with self.assertRaises(KeyError):
            render("{{ nope }}", {})

    def test_leaves_nginx_variables_alone(self):
        self.assertEqual(render("try_files $uri $uri/;", {}), "try_files $uri $uri/;")

    def test_the_site_config_renders_completely(self):
        values = validate(json.loads((ROOT / "config" / "site.json").read_text()))
        text = render((ROOT / "config" / "nginx.conf.tmpl").read_text(), values)
        self.assertNotIn("{{", text)
        self.assertIn("server_name %s;" % values["server_name"], text)


class ValidateTests(unittest.TestCase):
    def test_names_every_problem(self):
        with self.assertRaises(ValueError) as caught:
            validate({"listen": "80"})
        self.assertIn("missing server_name", str(caught.exception))
        self.assertIn("listen must be a number", str(caught.exception))

    def test_port_range(self):
        with self.assertRaises(ValueError):
            validate({"server_name": "x", "listen": 70000, "web_root": "/srv"})
