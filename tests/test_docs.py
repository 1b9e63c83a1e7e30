"""README.md and docs/ hold what they promise: a short entry, commands that
parse, and results tables that say where they come from.

* README.md is an entry of at most 200 lines; the long material is in docs/.
* Every `python experiments/X.py ...` command printed in a fenced code block or
  in `inline code` (the chapter table, `Measured:` lines) goes through the launcher's parsing without training:
  the file exists, its preset exists (`get_config(preset)`), every
  `--config.FIELD=...` names a field of that preset and every other flag is one
  the launcher defines.
* Every results table (a markdown table with a column of numbers) has, above it
  in its section, a header line of the one format

    Measured: YYYY-MM-DD, commit HASH, MACHINE, jax VERSION, command: `COMMAND`

  whose date is a date, whose commit is one this repository knows (when git is
  there to ask) and whose command is in backticks.
* The README's library example runs and learns the digits.
"""

import datetime
import functools
import glob
import importlib.util
import os
import re
import shlex
import subprocess

import pytest

from nkjax import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(
  [os.path.join(ROOT, 'README.md')]
  + glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True)
)
# The launcher's own flags (nkjax/launch.py); `--config.FIELD` is checked apart.
LAUNCHER_FLAGS = (
  '--config',
  '--workdir',
  '--allow_config_change',
  '--gpu_deterministic',
  '--help',
  '--helpfull',
)
# The commands printed today: a parser that finds fewer has stopped seeing some.
MIN_COMMANDS = 76
HEADER = re.compile(
  r'^Measured: (?P<date>\d{4}-\d{2}-\d{2}), commit (?P<commit>[0-9a-f]{7,40}), '
  r'(?P<machine>[^,]+), jax (?P<jax>\d+\.\d+[^,]*), command: (?P<command>`[^`]+`.*)$'
)
# A cell that is a figure: 0.904, 1,671,680, -1.01, +0.66, 18.2 / 18.7, 1.9-3.7 ms,
# 98.33%, 2.5 (bfloat16 2.3); not a version (0.10.2) or text.
NUMBER = re.compile(
  r'^[*_]*[-+~]?\d[\d,]*(\.\d+)?(\s*[-/]\s*\d[\d,]*(\.\d+)?)*'
  r'\s*(%|ms|s|min|dB|x)?[*_]*(\s*\(.*\))?$'
)


def _rel(path):
  return os.path.relpath(path, ROOT)


def _read(path):
  with open(path) as f:
    return f.read()


# ------------------------------------------------------------------ commands


def _fenced_blocks(text):
  """The contents of the ``` fenced code blocks of a markdown text."""
  return re.findall(r'^ *```[^\n]*\n(.*?)^ *```', text, re.M | re.S)


def _logical_lines(block):
  """Lines of a shell block, backslash continuations joined."""
  return block.replace('\\\n', ' ').splitlines()


def _experiment_commands(line):
  """Argument lists of every `python experiments/X.py ...` in one shell line.

  A command ends at `&&`, `||`, `;` or `|`; one quoted inside another token
  (`--command='cd nkjax && python experiments/cnn.py ...'`) is found too.
  """
  if 'experiments/' not in line:
    return []
  try:
    tokens = shlex.split(line, comments=True)
  except ValueError as e:  # an unbalanced quote is a broken command
    raise AssertionError(f'cannot split {line!r}: {e}') from e
  found, i = [], 0
  while i < len(tokens):
    token = tokens[i]
    if token in ('python', 'python3') and i + 1 < len(tokens):
      if re.fullmatch(r'experiments/\w+\.py', tokens[i + 1]):
        j = i + 2
        while j < len(tokens) and tokens[j] not in ('&&', '||', ';', '|'):
          j += 1
        found.append(tokens[i + 1 : j])
        i = j
        continue
    elif ' ' in token and 'experiments/' in token:
      found.extend(_experiment_commands(token))
    i += 1
  return found


def _inline_commands(text):
  """Commands in `inline code` outside the fenced blocks (tables, `Measured:` lines)."""
  prose = re.sub(r'^ *```[^\n]*\n.*?^ *```', '', text, flags=re.M | re.S)
  commands = []
  for span in re.findall(r'`([^`\n]*experiments/[^`\n]*)`', prose):
    commands.extend(_experiment_commands(span))
  return commands


def _all_commands():
  commands = []
  for page in PAGES:
    text = _read(page)
    for block in _fenced_blocks(text):
      for line in _logical_lines(block):
        commands += [(_rel(page), args) for args in _experiment_commands(line)]
    commands += [(_rel(page), args) for args in _inline_commands(text)]
  return commands


@functools.cache
def _experiment(path):
  """The experiment module at `path` (relative to the root), imported once."""
  name = '_docs_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _has_field(config, dotted):
  for part in dotted.split('.'):
    if not hasattr(config, 'keys') or part not in config:
      return False
    config = config[part]
  return True


def _check_command(args):
  """Parses one command as the launcher would, without running it."""
  path, flags = args[0], args[1:]
  assert os.path.exists(os.path.join(ROOT, path)), f'{path} does not exist'
  module = _experiment(path)
  preset = ''
  for flag in flags:
    if flag.startswith('--config='):
      file, _, preset = flag.partition('=')[2].partition(':')
      assert file == path, f'--config names {file}, the command runs {path}'
  presets = getattr(module, 'PRESETS', ())
  assert not preset or preset in presets, f'{path} has no preset {preset!r}: {presets}'
  config = module.get_config(preset) if preset else module.get_config()
  for flag in flags:
    name = flag.partition('=')[0]
    if name.startswith('--config.'):
      field = name.removeprefix('--config.')
      assert _has_field(config, field), (
        f'{path}:{preset or "(default)"} has no field {field!r}'
      )
    else:
      assert name in LAUNCHER_FLAGS, f'{name} is not a flag of the launcher'


def test_readme_is_an_entry_of_at_most_200_lines():
  lines = _read(os.path.join(ROOT, 'README.md')).splitlines()
  assert len(lines) <= 200, len(lines)


def test_the_parser_finds_commands_in_every_form():
  block = _fenced_blocks(
    'x\n```bash\npython experiments/sr.py --config=experiments/sr.py:upscale \\\n'
    '    --config.image=a.png  # note\n'
    "cd x && python experiments/cnn.py --config.hidden='(128,)' && ls\n"
    "ssh --command='cd nkjax && python experiments/mlp.py --workdir=gs://b/run'\n"
    '```\n'
  )
  found = [
    args for line in _logical_lines(block[0]) for args in _experiment_commands(line)
  ]
  assert found == [
    ['experiments/sr.py', '--config=experiments/sr.py:upscale', '--config.image=a.png'],
    ['experiments/cnn.py', '--config.hidden=(128,)'],
    ['experiments/mlp.py', '--workdir=gs://b/run'],
  ]


def test_the_checker_rejects_what_the_launcher_would():
  with pytest.raises(AssertionError, match='no field'):
    _check_command(['experiments/mlp.py', '--config.no_such_field=1'])
  with pytest.raises(AssertionError, match='no preset'):
    _check_command(['experiments/mlp.py', '--config=experiments/mlp.py:no_such_preset'])
  with pytest.raises(AssertionError, match='not a flag'):
    _check_command(['experiments/mlp.py', '--no_such_flag'])
  with pytest.raises(AssertionError, match='does not exist'):
    _check_command(['experiments/no_such_experiment.py'])


def test_every_documented_command_parses_through_the_launcher():
  commands = _all_commands()
  assert len(commands) >= MIN_COMMANDS, f'found {len(commands)} commands'
  failures = []
  for page, args in commands:
    try:
      _check_command(args)
    except (AssertionError, ValueError) as e:  # get_config's unknown preset
      failures.append(f'{page}: python {shlex.join(args)}: {e}')
  assert not failures, '\n'.join(failures)


def _commands_in_order(text):
  """The page's commands in the order a reader meets them (blocks and inline code)."""
  found = []
  for m in re.finditer(r'^ *```[^\n]*\n(.*?)^ *```', text, re.M | re.S):
    for line in _logical_lines(m.group(1)):
      found += [(m.start(), args) for args in _experiment_commands(line)]
  # Inline code outside the blocks, at its offset (blocks blanked, not removed).
  prose = re.sub(
    r'^ *```[^\n]*\n.*?^ *```', lambda m: ' ' * len(m.group(0)), text, flags=re.M | re.S
  )
  for m in re.finditer(r'`([^`\n]*experiments/[^`\n]*)`', prose):
    found += [(m.start(), args) for args in _experiment_commands(m.group(1))]
  return [args for _, args in sorted(found, key=lambda x: x[0])]


# Fields whose value is the workdir of a run that the command reads.
READS = ('run', 'checkpoint', 'checkpoint_dir', 'srresnet_workdir')


def _config_of(args):
  module = _experiment(args[0])
  config_arg = next(
    (f.partition('=')[2] for f in args[1:] if f.startswith('--config=')), args[0]
  )
  preset = config_arg.partition(':')[2]
  return (
    module,
    config_arg,
    module.get_config(preset) if preset else module.get_config(),
  )


def _writes(args):
  """The workdir a command writes: its --workdir or the launcher's default."""
  for flag in args[1:]:
    if flag.startswith('--workdir='):
      return os.path.normpath(flag.partition('=')[2])
  module, config_arg, _ = _config_of(args)
  return os.path.normpath(launch._default_workdir(module, config_arg))


def _reads(args):
  """The runs a command reads: a `READS` field given on the command line, or
  its preset's default where the task only reads runs (and SRGAN's warm start)."""
  module, _, config = _config_of(args)
  given = {
    f.partition('=')[0].removeprefix('--config.'): f.partition('=')[2]
    for f in args[1:]
    if f.startswith('--config.')
  }
  runs = [given[f] for f in READS if f in given]
  reads_only = not getattr(module, 'resumable', lambda _: True)(config)
  for field in READS:
    if field in given or config.get(field) is None:
      continue
    if field == 'srresnet_workdir':
      if config.get('model') == 'srgan' and given.get('warm_start') != 'False':
        runs.append(config[field])
    elif reads_only:
      runs.append(config[field])
  # RUN_DIR, WORKDIR: placeholders for the reader's own run.
  return [os.path.normpath(r) for r in runs if not re.search(r'[A-Z]{3}', r)]


def _order_failures(text):
  """Each command of `text` that reads a run no earlier command writes."""
  failures, written = [], set()
  for args in _commands_in_order(text):
    for run in _reads(args):
      if run not in written:
        failures.append(
          f'python {shlex.join(args)} reads {run}, which no earlier command on '
          f'the page writes (they write {sorted(written)})'
        )
    written.add(_writes(args))
  return failures


def test_documented_commands_work_in_the_order_shown():
  # A command that reads a run (detect, svd, upscale, srgan's warm start)
  # reads one that an earlier command on the same page writes.
  for page in PAGES:
    failures = _order_failures(_read(page))
    assert not failures, f'{_rel(page)}: ' + '\n'.join(failures)


def test_the_order_check_knows_where_runs_go():
  sr = 'python experiments/sr.py'
  upscale = (
    f'{sr} --config=experiments/sr.py:upscale --config.checkpoint=runs/sr-srresnet'
  )
  # The SR default is the srresnet preset and writes where it does.
  assert not _order_failures(f'```\n{sr}\n{upscale}\n```\n')
  assert not _order_failures(
    f'```\n{sr} --config=experiments/sr.py:srresnet\n{upscale}\n```'
  )
  assert _order_failures(f'```\n{upscale}\n{sr}\n```\n')
  # srgan warm-starts from runs/sr-srresnet unless told not to.
  srgan = f'{sr} --config=experiments/sr.py:srgan'
  assert _order_failures(f'```\n{srgan}\n```\n')
  assert not _order_failures(f'```\n{srgan} --config.warm_start=False\n```\n')
  # detect reads the default run, runs/detection, unless given another.
  det = 'python experiments/detection.py'
  detect = f'{det} --config=experiments/detection.py:detect --config.image=a.png'
  assert not _order_failures(f'```\n{det}\n{detect}\n```\n')
  assert _order_failures(f'```\n{det} --workdir=runs/x\n{detect}\n```\n')
  assert not _order_failures(
    f'`{det} --workdir=runs/x` then `{detect} --config.run=runs/x`'
  )


def test_every_experiment_is_documented():
  shown = {args[0] for _, args in _all_commands()}
  for path in sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.py'))):
    assert _rel(path) in shown, f'no page shows a command of {_rel(path)}'


# ------------------------------------------------------------- results tables


def _tables(text):
  """(line index of the first row, rows as lists of cells) of each table."""
  lines = text.splitlines()
  tables, i = [], 0
  while i < len(lines):
    if (
      lines[i].lstrip().startswith('|')
      and i + 1 < len(lines)
      and re.match(r'^\s*\|[\s:|-]+\|\s*$', lines[i + 1])
    ):
      start, rows = i, []
      while i < len(lines) and lines[i].lstrip().startswith('|'):
        cells = [c.strip() for c in lines[i].strip().strip('|').split(' | ')]
        rows.append(cells)
        i += 1
      tables.append((start, rows))
    else:
      i += 1
  return lines, tables


def _is_results_table(rows):
  """A table with a column (other than the first) whose cells are all figures."""
  body = rows[2:]
  for column in range(1, max(len(r) for r in rows)):
    cells = [r[column] for r in body if column < len(r) and r[column]]
    if cells and all(NUMBER.match(c) for c in cells):
      return True
  return False


def _header_of(lines, start):
  """The `Measured:` line above line `start`, within its section, or None."""
  for line in reversed(lines[:start]):
    if line.startswith('Measured:'):
      return line
    if line.startswith('#'):
      return None
  return None


def test_number_cells_and_tables_are_recognised():
  assert all(
    NUMBER.match(c)
    for c in ('0.904', '1,671,680', '-1.01', '+0.66', '18.2 / 18.7', '1.9-3.7 ms',
              '98.33%', '2.5 (bfloat16 2.3)', '**28.93**', '347 s')
  )  # fmt: skip
  assert not any(NUMBER.match(c) for c in ('0.10.2', 'x4', 'bicubic', '2.21.0, 4.9.10'))
  table = '| a | b |\n| --- | --- |\n| x | 0.5 |\n'
  ((start, rows),) = _tables(table)[1]
  assert _is_results_table(rows)
  assert _header_of(['# t', 'Measured: x', '', 'text', '| a |'], 4) == 'Measured: x'
  assert _header_of(['Measured: x', '## next', '| a |'], 2) is None


@functools.cache
def _git_knows(commit):
  try:
    result = subprocess.run(
      ['git', '-C', ROOT, 'cat-file', '-e', f'{commit}^{{commit}}'],
      capture_output=True,
      check=False,
    )
  except OSError:
    return None
  if not os.path.exists(os.path.join(ROOT, '.git')):
    return None  # a source archive: no history to ask
  return result.returncode == 0


@pytest.mark.parametrize('page', PAGES, ids=_rel)
def test_every_results_table_has_a_measured_header(page):
  lines, tables = _tables(_read(page))
  for start, rows in tables:
    if not _is_results_table(rows):
      continue
    header = _header_of(lines, start)
    where = f'{_rel(page)}:{start + 1} ({" | ".join(rows[0])})'
    assert header, f'{where}: no `Measured:` line above the table in its section'
    match = HEADER.match(header)
    assert match, f'{where}: the header does not follow the format: {header}'
    datetime.date.fromisoformat(match['date'])
    assert _git_knows(match['commit']) is not False, f'{where}: unknown commit'


def test_every_measured_line_follows_the_format():
  for page in PAGES:
    for n, line in enumerate(_read(page).splitlines(), 1):
      if line.startswith('Measured:'):
        match = HEADER.match(line)
        assert match, f'{_rel(page)}:{n}: {line}'
        assert _git_knows(match['commit']) is not False, (
          f'{_rel(page)}:{n}: unknown commit'
        )


def test_pages_state_results_not_circumstances():
  pattern = re.compile(
    r'this session|earlier session|load average|engineers\' jobs|busy machine|'
    r'shared machine|loaded machine|idle machine',
    re.I,
  )
  for page in PAGES:
    for n, line in enumerate(_read(page).splitlines(), 1):
      assert not pattern.search(line), f'{_rel(page)}:{n}: {line}'


# Pages that another change adds; a link to one is not yet a broken link.
PENDING_PAGES = ('docs/testing.md',)


def test_relative_links_point_at_files():
  for page in PAGES:
    for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', _read(page)):
      if re.match(r'[a-z]+:', target):
        continue
      path = os.path.normpath(os.path.join(os.path.dirname(page), target))
      if _rel(path) in PENDING_PAGES:
        continue
      assert os.path.exists(path), f'{_rel(page)} links to missing {target}'


def test_the_readme_library_example_runs_and_learns(capsys):
  (code,) = re.findall(
    r'```python\n(.*?)```', _read(os.path.join(ROOT, 'README.md')), re.S
  )
  exec(compile(code, 'README.md', 'exec'), {'__name__': '__readme__'})
  (accuracy,) = re.findall(r"'accuracy': ([\d.]+)", capsys.readouterr().out)
  assert float(accuracy) > 0.9  # the comment says about 0.97; chance is 0.1


def test_the_readme_layout_names_every_module_of_the_tree():
  readme = _read(os.path.join(ROOT, 'README.md'))
  (layout,) = re.findall(r'^## Layout\n+```\n(.*?)```', readme, re.M | re.S)
  package = os.path.join(ROOT, 'nkjax')
  for folder, dirs, files in os.walk(package):
    dirs[:] = [d for d in dirs if not d.startswith(('.', '_'))]
    sub = os.path.relpath(folder, package)
    if sub != '.':
      assert f'{sub}/' in layout, f'the layout omits nkjax/{sub}/'
    for name in files:
      if not name.endswith('.py') or name == '__init__.py':
        continue
      word = name if sub == '.' else name.removesuffix('.py')
      assert re.search(rf'(?<![\w.]){re.escape(word)}(?![\w])', layout), (
        f'the layout omits nkjax/{"" if sub == "." else sub + "/"}{name}'
      )
  # ... and its nkjax/ part (the indented lines under it) names no file the tree lacks.
  (nkjax_part,) = re.findall(r'^nkjax/\n((?: .*\n)*)', layout, re.M)
  for name in re.findall(r'\b(\w+\.py)\b', nkjax_part):
    assert glob.glob(os.path.join(package, '**', name), recursive=True), name
