from agentops.teams.templatetags.agentops import render_model_output


def test_markdown_renders_structure():
    html = render_model_output("# Title\n\n- **one**\n- `two`\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<h1>Title</h1>" in html
    assert "<strong>one</strong>" in html and "<code>two</code>" in html
    assert "<table>" in html


def test_markdown_strips_scripts_handlers_and_javascript_urls():
    html = render_model_output(
        '<script>alert(1)</script>\n\n<img src="x" onerror="alert(1)">\n\n'
        "[click](javascript:alert(1)) [ok](https://example.com/)"
    )
    assert "<script" not in html and "<img" not in html  # raw HTML stays visible text
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert 'href="https://example.com/"' in html
    assert "noopener" in html


def test_markdown_drops_external_images_and_keeps_local_ones():
    html = render_model_output("![tracker](https://evil.example/p.gif) ![logo](/static/x.png)")
    assert "evil.example" not in html
    assert 'src="/static/x.png"' in html


def test_markdown_of_nothing_is_empty():
    assert render_model_output(None) == ""


def test_sanitizer_removes_what_markdown_could_smuggle():
    html = render_model_output('[x](javascript:alert(1) "t") ![i](javascript:alert(1))')
    assert 'href="javascript' not in html
    assert 'src="javascript' not in html
    assert "<a" not in html or 'href="' not in html
