#!/usr/bin/env python3
"""Check that every relative link in README.md and docs/*.md resolves (file or directory, and the
#anchor when the target is a Markdown file), and that every docs/*.md named in a Go package comment
exists. Prints one line per broken link and exits 1 when there is any."""
import glob, os, re, subprocess, sys

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

def slug(heading):
    # GitHub's anchor: lower case, drop punctuation except '-' and ' ', spaces to '-'.
    h = re.sub(r'`', '', heading.strip().lower())
    h = re.sub(r'[^\w\- ]', '', h)
    return h.replace(' ', '-')

def anchors(path):
    out, fence = set(), False
    for line in open(path, encoding='utf-8'):
        if line.lstrip().startswith('```'):
            fence = not fence
        elif not fence and line.startswith('#'):
            out.add(slug(line.lstrip('#')))
    return out

bad = []
for md in ['README.md'] + sorted(glob.glob('docs/*.md')):
    text = re.sub(r'```.*?```', '', open(md, encoding='utf-8').read(), flags=re.S)
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue  # absolute URL
        path, _, anchor = target.partition('#')
        full = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
        if not os.path.exists(full):
            bad.append(f'{md}: {target}: no such file')
        elif anchor and full.endswith('.md') and anchor not in anchors(full):
            bad.append(f'{md}: {target}: no heading #{anchor} in {full}')

gofiles = subprocess.run(['git', 'ls-files', '*.go'], capture_output=True, text=True).stdout.split()
for f in gofiles:
    lines = open(f, encoding='utf-8').read().split('\n')
    try:
        end = next(i for i, l in enumerate(lines) if l.startswith('package '))
    except StopIteration:
        continue
    for l in lines[:end]:
        if l.startswith('//'):
            for doc in re.findall(r'docs/[\w.-]+\.md', l):
                if not os.path.exists(doc):
                    bad.append(f'{f}: {doc}: no such file')

for b in bad:
    print(b)
sys.exit(1 if bad else 0)
