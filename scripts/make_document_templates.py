"""Writes the shipped Word templates of the incident documents (issue 19) to config/documents/.

    python scripts/make_document_templates.py [FOLDER]

Each template is Jinja in a .docx (docxtpl): the office edits the text around the {{ … }} fields
in Word or WPS and drops its copy in the folder YUQING_DOCUMENT_TEMPLATES names (a file there
replaces the shipped one of the same name). The fields each document gets are listed in
activities/documents.py. Rerun this script to regenerate the shipped files.

The format follows GB/T 9704-2012 党政机关公文格式 where it applies: A4, margins top 3.7 cm, bottom
3.5 cm, left 2.8 cm, right 2.6 cm; the title in 方正小标宋简体 2号 (22 pt) centred; the body in
仿宋_GB2312 3号 (16 pt), 22 lines a page (28.95 pt exact); headings in 黑体 3号; the page number in
the footer as "— 1 —" in 宋体 4号 (14 pt). East Asian font names are set on `w:eastAsia`, on the
styles (so text docxtpl renders inherits them) and on every run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Pt
from docx.text.run import Run

FOLDER = Path(__file__).resolve().parent.parent / "config" / "documents"

TITLE_FONT = "方正小标宋简体"
BODY_FONT = "仿宋_GB2312"
HEADING_FONT = "黑体"
PAGE_NUMBER_FONT = "宋体"
LINE = Pt(28.95)  # 22 lines a page on the type area


def _fonts(element: object, name: str) -> None:
    """Sets the ASCII, high-ANSI and East Asian font of a run's or a style's rPr."""
    r_pr = element.get_or_add_rPr()  # type: ignore[attr-defined]
    fonts = r_pr.get_or_add_rFonts()
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), name)


def _run(paragraph: object, text: str, font: str, size: float, bold: bool = False) -> Run:
    run: Run = paragraph.add_run(text)  # type: ignore[attr-defined]
    run.font.name = font
    run.font.size = Pt(size)
    run.font.bold = bold
    _fonts(run._r, font)
    return run


def new_document() -> DocumentObject:
    doc = Document()
    section = doc.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
    section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)
    section.footer_distance = Cm(2.8)
    # The standard's grid: 22 lines a page (28 characters a line follow from the margins and 3号).
    grid = section._sectPr.find(qn("w:docGrid"))
    if grid is None:
        grid = OxmlElement("w:docGrid")
        section._sectPr.append(grid)
    grid.set(qn("w:type"), "lines")
    grid.set(qn("w:linePitch"), "579")  # 28.95 pt in twentieths of a point
    styles = doc.styles
    normal = styles["Normal"]
    normal.font.name = BODY_FONT
    normal.font.size = Pt(16)
    _fonts(normal.element, BODY_FONT)
    fmt = normal.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = LINE
    fmt.space_before = fmt.space_after = Pt(0)
    # The document's defaults too (docDefaults), for text outside any named style.
    defaults = doc.styles.element.find(qn("w:docDefaults"))
    if defaults is not None:
        r_pr = defaults.find(qn("w:rPrDefault")).find(qn("w:rPr"))
        fonts = r_pr.find(qn("w:rFonts"))
        if fonts is None:
            fonts = OxmlElement("w:rFonts")
            r_pr.insert(0, fonts)
        for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
            fonts.set(qn(attr), BODY_FONT)
        for attr in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
            fonts.attrib.pop(qn(attr), None)
    title = styles["Title"]
    title.font.name = TITLE_FONT
    title.font.size = Pt(22)
    title.font.bold = False
    title.font.color.rgb = None
    _fonts(title.element, TITLE_FONT)
    title.paragraph_format.alignment = WD_ALIGN_PARAGRAPH.CENTER
    title.paragraph_format.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    title.paragraph_format.line_spacing = Pt(36)
    title.paragraph_format.space_after = LINE
    # The built-in Title has a bottom border in python-docx's default template: a 公文 has none.
    p_pr = title.element.find(qn("w:pPr"))
    if p_pr is not None and p_pr.find(qn("w:pBdr")) is not None:
        p_pr.remove(p_pr.find(qn("w:pBdr")))
    heading = styles["Heading 1"]
    heading.font.name = HEADING_FONT
    heading.font.size = Pt(16)
    heading.font.bold = False
    heading.font.color.rgb = None
    _fonts(heading.element, HEADING_FONT)
    heading.paragraph_format.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    heading.paragraph_format.line_spacing = LINE
    heading.paragraph_format.space_before = heading.paragraph_format.space_after = Pt(0)
    heading.paragraph_format.first_line_indent = Pt(32)
    _page_number(doc)
    return doc


def _page_number(doc: DocumentObject) -> None:
    """ "— N —" in the footer, centred, 宋体 4号: a PAGE field between two em dashes."""
    footer = doc.sections[0].footer
    paragraph = footer.paragraphs[0]
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(paragraph, "— ", PAGE_NUMBER_FONT, 14)
    run = _run(paragraph, "", PAGE_NUMBER_FONT, 14)
    begin, instr, end = (
        OxmlElement("w:fldChar"),
        OxmlElement("w:instrText"),
        OxmlElement("w:fldChar"),
    )
    begin.set(qn("w:fldCharType"), "begin")
    instr.set(qn("xml:space"), "preserve")
    instr.text = " PAGE "
    end.set(qn("w:fldCharType"), "end")
    run._r.append(begin)
    run._r.append(instr)
    run._r.append(end)
    _run(paragraph, " —", PAGE_NUMBER_FONT, 14)


def title(doc: DocumentObject, text: str) -> None:
    paragraph = doc.add_paragraph(style="Title")
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(paragraph, text, TITLE_FONT, 22)


def heading(doc: DocumentObject, text: str) -> None:
    paragraph = doc.add_paragraph(style="Heading 1")
    _run(paragraph, text, HEADING_FONT, 16)


def para(doc: DocumentObject, text: str, *, indent: bool = True, right: bool = False) -> None:
    paragraph = doc.add_paragraph(style="Normal")
    if indent:
        paragraph.paragraph_format.first_line_indent = Pt(32)  # two characters
    if right:
        paragraph.alignment = WD_ALIGN_PARAGRAPH.RIGHT
    _run(paragraph, text, BODY_FONT, 16)


def picture(doc: DocumentObject, text: str) -> None:
    """A centred paragraph for a picture (docxtpl's InlineImage): single line spacing, since
    the body's exact 28.95 pt would cut the picture to one line's height."""
    paragraph = doc.add_paragraph(style="Normal")
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    paragraph.paragraph_format.first_line_indent = Pt(0)
    paragraph.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
    _run(paragraph, text, BODY_FONT, 16)


def control(doc: DocumentObject, text: str) -> None:
    """A docxtpl paragraph tag ({%p … %}): the paragraph is removed when rendered."""
    paragraph = doc.add_paragraph(style="Normal")
    _run(paragraph, text, BODY_FONT, 16)


def table(doc: DocumentObject, headers: list[str], cells: list[str], items: str) -> None:
    """A ledger: a header row, then one row per item of `items` ({%tr for %} rows)."""
    grid = doc.add_table(rows=4, cols=len(headers))
    grid.style = "Table Grid"
    grid.alignment = WD_TABLE_ALIGNMENT.CENTER
    rows = (headers, [f"{{%tr for row in {items} %}}"], cells, ["{%tr endfor %}"])
    for row, texts in zip(grid.rows, rows, strict=True):
        for cell, text in zip(row.cells, texts, strict=False):
            paragraph = cell.paragraphs[0]
            paragraph.paragraph_format.first_line_indent = Pt(0)
            paragraph.paragraph_format.line_spacing_rule = WD_LINE_SPACING.SINGLE
            font = HEADING_FONT if texts is headers else BODY_FONT
            _run(paragraph, text, font, 12)


def drill_line(doc: DocumentObject) -> None:
    control(doc, "{%p if drill %}")
    para(doc, "（演练，非真实舆情）", indent=False)
    control(doc, "{%p endif %}")


def each(doc: DocumentObject, name: str, items: str, line: str, empty: str) -> None:
    """One paragraph `line` per item of `items` (bound to `name`), or `empty` when none: the
    {%p … %} tags are paragraphs of their own, which docxtpl removes when it renders."""
    control(doc, f"{{%p for {name} in {items} %}}")
    para(doc, line)
    control(doc, "{%p endfor %}")
    control(doc, f"{{%p if not {items} %}}")
    para(doc, empty)
    control(doc, "{%p endif %}")


def timeline_lines(doc: DocumentObject, items: str) -> None:
    line = "{{ e.at }}　{{ e.summary }}{% if e.actor %}（{{ e.actor }}）{% endif %}"
    each(doc, "e", items, line, "（暂无记录）")


def facts(doc: DocumentObject) -> None:
    para(doc, "事件编号：{{ i.number }}")
    para(doc, "舆情标题：{{ i.title }}")
    para(doc, "舆情内容：{{ i.content }}")
    para(doc, "来源平台：{{ i.source }}")
    para(doc, "原帖链接：{{ i.url or '无' }}")
    para(doc, "发布时间：{{ i.posted_at or '不详' }}")
    para(doc, "发现时间：{{ i.discovered_at }}")
    para(doc, "传播情况：{{ i.spread }}")
    para(doc, "舆情等级：{{ i.severity }}　　舆情类别：{{ i.category }}")
    para(doc, "责任单位：{{ i.responsible_unit }}　　协同单位：{{ i.co_units or '无' }}")


def written_report() -> DocumentObject:
    """R-WRITTEN: 舆情信息报告."""
    doc = new_document()
    title(doc, "舆情信息报告")
    drill_line(doc)
    heading(doc, "一、舆情基本情况")
    facts(doc)
    heading(doc, "二、已采取的处置措施")
    timeline_lines(doc, "measures")
    heading(doc, "三、报送信息")
    para(doc, "报送单位：{{ i.reporter_unit }}")
    para(doc, "报送人：{{ i.reporter_name or '（请填写）' }}")
    para(doc, "报送时间：{{ reported_at }}")
    para(doc, "{{ i.reporter_unit }}", right=True)
    para(doc, "{{ today }}", right=True)
    return doc


LEDGER_HEADERS = ["期限事项", "责任单位", "截止时间", "完成时间", "情况"]
LEDGER_CELLS = [
    "{{ row.title }}",
    "{{ row.unit }}",
    "{{ row.due_at }}",
    "{{ row.met_at or '—' }}",
    "{{ row.state }}",
]


def accountability_and_commendations(doc: DocumentObject, numbers: tuple[str, str]) -> None:
    heading(doc, f"{numbers[0]}、责任追究情况")
    each(
        doc,
        "a",
        "accountability",
        "{{ a.unit }}{% if a.person %}（{{ a.person }}）{% endif %}：{{ a.kind }}，"
        "{{ a.deadline }}（截止{{ a.due_at }}）{% if a.reason %}，{{ a.reason }}{% endif %}"
        "{% if a.voided %}（已作废）{% endif %}。",
        "无迟报、漏报、谎报、瞒报情况。",
    )
    heading(doc, f"{numbers[1]}、表彰情况")
    each(
        doc,
        "c",
        "commendations",
        "{{ c.unit }}{% if c.person %}（{{ c.person }}）{% endif %}：{{ c.reason }}（{{ c.at }}）",
        "无。",
    )


def replies(doc: DocumentObject) -> None:
    """Each reply published: when, which and where, then its wording as published."""
    control(doc, "{%p for r in replies %}")
    para(doc, "{{ r.at }}　{{ r.summary }}")
    control(doc, "{%p if r.detail %}")
    para(doc, "回复内容：{{ r.detail }}")
    control(doc, "{%p endif %}")
    control(doc, "{%p endfor %}")
    control(doc, "{%p if not replies %}")
    para(doc, "未发布官方回复。")
    control(doc, "{%p endif %}")


def summary_report() -> DocumentObject:
    """R-SUMMARY: 舆情处置情况报告, for 镇党政办; prefilled, the unit edits it."""
    doc = new_document()
    title(doc, "关于“{{ i.title }}”舆情处置情况的报告")
    drill_line(doc)
    para(doc, "{{ party_office }}：", indent=False)
    para(
        doc,
        "{{ i.discovered_at }}，{{ i.reporter_unit }}发现{{ i.source }}上出现“{{ i.title }}”"
        "相关舆情（{{ i.severity }}，{{ i.category }}），由{{ i.responsible_unit }}牵头处置。"
        "现将舆情发生、传播和处置情况报告如下。",
    )
    heading(doc, "一、舆情发生和传播情况")
    facts(doc)
    heading(doc, "二、处置经过")
    timeline_lines(doc, "timeline")
    heading(doc, "三、回应发布情况")
    replies(doc)
    heading(doc, "四、时限执行情况")
    table(doc, LEDGER_HEADERS, LEDGER_CELLS, "deadlines")
    para(doc, "共{{ ledger.total }}项，按期{{ ledger.on_time }}项，逾期{{ ledger.late }}项。")
    accountability_and_commendations(doc, ("五", "六"))
    heading(doc, "七、经验教训")
    para(doc, "（请结合本次舆情处置情况，总结经验做法，分析存在的问题和不足，提出改进措施。）")
    para(doc, "{{ i.responsible_unit }}", right=True)
    para(doc, "{{ today }}", right=True)
    return doc


def escalation_notice() -> DocumentObject:
    """R-ESCALATE: 督办通知, one escalation step."""
    doc = new_document()
    title(doc, "督办通知")
    drill_line(doc)
    para(doc, "{{ e.unit }}：", indent=False)
    para(
        doc,
        "“{{ i.title }}”舆情（编号{{ i.number }}）的“{{ e.deadline }}”应于{{ e.due_at }}前完成，"
        "自该时起逾期{% if e.late %}，截至{{ e.at }}已逾期{{ e.late }}{% endif %}，仍未完成。"
        "现进行第{{ e.step }}级督办，请立即办理并报送办理情况。",
    )
    heading(doc, "一、督办事项")
    para(doc, "期限事项：{{ e.deadline }}")
    para(doc, "截止时间：{{ e.due_at }}（自该时起逾期）")
    para(doc, "督办级别：第{{ e.step }}级")
    para(doc, "督办时间：{{ e.at }}")
    para(doc, "督办内容：{{ e.summary }}")
    heading(doc, "二、通知对象及送达情况")
    para(doc, "通知对象：{{ e.targets }}")
    table(
        doc,
        ["通知对象", "渠道", "状态", "送达时间"],
        ["{{ row.recipient }}", "{{ row.channel }}", "{{ row.state }}", "{{ row.sent_at or '—' }}"],
        "deliveries",
    )
    heading(doc, "三、签收情况")
    table(doc, ["通知对象", "签收"], ["{{ row.person }}", "{{ row.state }}"], "receipts")
    para(doc, "{{ office }}", right=True)
    para(doc, "{{ today }}", right=True)
    return doc


def progress_report() -> DocumentObject:
    """R-PROGRESS: 续报."""
    doc = new_document()
    title(doc, "舆情信息续报")
    drill_line(doc)
    para(doc, "（第{{ progress.count + 1 }}次续报）", indent=False)
    heading(doc, "一、舆情基本情况")
    para(doc, "事件编号：{{ i.number }}")
    para(doc, "舆情标题：{{ i.title }}")
    para(doc, "舆情等级：{{ i.severity }}　　目前阶段：{{ i.phase }}")
    para(doc, "责任单位：{{ i.responsible_unit }}")
    heading(doc, "二、此前报告情况")
    each(doc, "e", "progress.reports", "{{ e.at }}　{{ e.summary }}", "此前未续报。")
    heading(doc, "三、处置进展")
    timeline_lines(doc, "since")
    heading(doc, "四、衍生的新情况")
    para(doc, "（请填写舆情的新变化、新情况及下一步措施。）")
    para(doc, "{{ i.responsible_unit }}", right=True)
    para(doc, "{{ today }}", right=True)
    return doc


def case_file() -> DocumentObject:
    """The whole case file of one incident: facts, ledger, timeline, escalations, records."""
    doc = new_document()
    title(doc, "舆情处置台账")
    drill_line(doc)
    heading(doc, "一、基本情况")
    facts(doc)
    para(doc, "报送单位：{{ i.reporter_unit }}　　报送人：{{ i.reporter_name or '—' }}")
    para(doc, "目前阶段：{{ i.phase }}{% if i.closed_at %}（{{ i.closed_at }}结案）{% endif %}")
    heading(doc, "二、时限台账")
    table(doc, LEDGER_HEADERS, LEDGER_CELLS, "deadlines")
    para(doc, "共{{ ledger.total }}项，按期{{ ledger.on_time }}项，逾期{{ ledger.late }}项。")
    heading(doc, "三、处置经过")
    timeline_lines(doc, "timeline")
    heading(doc, "四、督办情况")
    line = (
        "{{ e.at }}　第{{ e.step }}级督办：{{ e.deadline }}；通知{{ e.targets }}"
        "{% if e.signed %}；签收：{{ e.signed }}{% endif %}。"
    )
    each(doc, "e", "escalations", line, "无。")
    heading(doc, "五、回应发布情况")
    replies(doc)
    accountability_and_commendations(doc, ("六", "七"))
    heading(doc, "八、附件")
    each(
        doc,
        "a",
        "attachments",
        "{{ loop.index }}. {{ a.name }}（{{ a.kind }}，{{ a.size }}），{{ a.added_by }}于"
        "{{ a.added_at }}添加{% if a.missing %}（文件缺失，仅存记录）{% endif %}；"
        "校验值（SHA-256）：{{ a.sha256 }}",
        "无。",
    )
    control(doc, "{%p for a in attachments %}")
    control(doc, "{%p if a.image %}")
    picture(doc, "{{ a.image }}")
    picture(doc, "附件{{ loop.index }}：{{ a.name }}")
    control(doc, "{%p endif %}")
    control(doc, "{%p endfor %}")
    para(doc, "生成时间：{{ generated_at }}", right=True)
    return doc


TEMPLATES = {
    "written_report.docx": written_report,
    "summary_report.docx": summary_report,
    "escalation_notice.docx": escalation_notice,
    "progress_report.docx": progress_report,
    "case_file.docx": case_file,
}


STYLE_REFS = ("w:pStyle", "w:rStyle", "w:tblStyle", "w:numStyleLink", "w:styleLink")
STYLE_LINKS = ("w:basedOn", "w:link", "w:next")
WITH_EFFECTS = "http://schemas.microsoft.com/office/2007/relationships/stylesWithEffects"


def slim(doc: DocumentObject) -> None:
    """python-docx's blank document carries some 160 styles and the latent-style table (350 KB
    of styles.xml) and a 440 KB stylesWithEffects.xml that Word 2010 alone wrote: every render
    parsed and every save compressed them again (a fifth of the worker's CPU when each close
    archived a case file; issue 21). Kept: the styles the document, its footers and numbering
    use, what they are based on or linked to, and the defaults."""
    part = doc.part
    for rel_id, rel in list(part.rels.items()):
        if rel.reltype == WITH_EFFECTS:
            part.drop_rel(rel_id)
    styles = doc.styles.element
    used: set[str] = set()
    styles_part = part.part_related_by(
        "http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles"
    )
    parts = [part.element] + [
        r.target_part.element
        for r in part.rels.values()
        if not r.is_external
        and hasattr(r.target_part, "element")
        and r.target_part is not styles_part
    ]
    for element in parts:
        for tag in STYLE_REFS:
            used |= {e.get(qn("w:val")) for e in element.iter(qn(tag))}
    by_id = {s.get(qn("w:styleId")): s for s in styles.iter(qn("w:style"))}
    keep = {i for i, s in by_id.items() if s.get(qn("w:default")) == "1"} | (used & set(by_id))
    todo = list(keep)
    while todo:
        style = by_id[todo.pop()]
        for tag in STYLE_LINKS:
            for link in style.iter(qn(tag)):
                target = link.get(qn("w:val"))
                if target in by_id and target not in keep:
                    keep.add(target)
                    todo.append(target)
    for style_id, style in by_id.items():
        if style_id not in keep:
            styles.remove(style)
    for latent in list(styles.iter(qn("w:latentStyles"))):
        styles.remove(latent)


def main(folder: Path = FOLDER) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in TEMPLATES.items():
        doc = make()
        doc.core_properties.author = "yuqing"
        slim(doc)
        doc.save(str(folder / name))
        print(folder / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER)
