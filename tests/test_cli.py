"""The registry's own CLI commands (list / info / download) run in-process."""
import json

import pytest

from reidzoo.cli import COMMANDS, main
from reidzoo.utils import count_gflops


def test_list_filters(capsys):
    assert main(['list', 'tp_*']) == 0
    names = capsys.readouterr().out.split()
    assert names == ['tp_resnet50', 'tp_seresnet50']


def test_list_pretrained_empty_manifest_lists_nothing_unpublished(capsys):
    assert main(['list', '--pretrained']) == 0
    out = capsys.readouterr().out.split()
    assert all('.' in name for name in out)  # only arch.tag names


def test_info_reports_params_and_flops(capsys):
    assert main(['info', 'tp_resnet50', '--model-kwargs', json.dumps({'backbone': 'resnet18'})]) == 0
    out = capsys.readouterr().out
    assert 'parameters:   11.18 M' in out  # resnet18 trunk without fc
    gflops = float(out.split('GFLOPs:')[1].split()[0])
    assert gflops > 1.0
    assert 'test_sampling: dense' in out


def test_count_gflops_scales_with_frames():
    import reidzoo
    model = reidzoo.create_model('tp_resnet50', backbone='test_resnet')
    one = count_gflops(model, (1, 1, 3, 64, 32))
    four = count_gflops(model, (1, 4, 3, 64, 32))
    assert four == pytest.approx(4 * one, rel=1e-3)


def test_download_without_weights_fails_clearly(capsys):
    assert main(['download', 'tp_resnet50']) == 1
    assert 'No published weights' in capsys.readouterr().err


def test_every_command_is_documented():
    assert {'list', 'info', 'download', 'convert', 'train', 'export', 'push', 'extract', 'benchmark',
            'synth'} <= set(COMMANDS)
    assert all(help_text for _, help_text in COMMANDS.values())


@pytest.mark.parametrize('command', ['list', 'info', 'download', 'push'])
def test_every_option_has_help_with_its_default(command):
    from reidzoo.cli import command_parser
    parser, _ = command_parser(command)
    for action in parser._actions:
        if action.option_strings and action.dest != 'help' and not action.required:
            assert action.help and 'default' in action.help, (command, action.option_strings)


def test_list_pretrained_with_nothing_published_says_how_to_publish(capsys, monkeypatch):
    monkeypatch.delenv('REIDZOO_MANIFESTS', raising=False)
    import reidzoo
    assert reidzoo.list_pretrained() == []  # the repo's manifest lists only weights that exist: none today
    assert main(['list', '--pretrained']) == 0
    out, err = capsys.readouterr()
    assert out == ''
    assert 'No published weights' in err and 'reidzoo push' in err and 'REIDZOO_MANIFESTS' in err
    assert main(['list', 'nosuch*']) == 0
    assert 'No architectures match' in capsys.readouterr().err
