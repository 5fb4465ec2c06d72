"""What each cell can learn: the field's synthetic capability tasks, every cell side by side.

Run from the repository root (after ``pip install -e ".[examples]"``)::

    python -m benchmarks.capabilities                     # every cell on every task
    python -m benchmarks.capabilities --cells lstm,mingru --tasks parity,mqar
    python -m benchmarks.capabilities --quick             # a smoke run, in seconds
    python -m benchmarks.capabilities --scale 3 --tasks mqar  # 3x the steps, every cell

Each task is a module with its data generator (sequences drawn on the fly from a
seed, training and test streams apart), its loss and its metric:

- :mod:`.adding`: the adding problem at ``T = 100`` and ``T = 1000``;
- :mod:`.parity`: running parity, tested on lengths beyond training;
- :mod:`.selective_copy`: Mamba's selective copying;
- :mod:`.mqar`: multi-query associative recall;
- :mod:`.delayed_recall`: a bit pattern recalled after a delay;
- :mod:`.induction`: induction heads, tested on lengths beyond training.

:mod:`.model` is the one model every cell is trained in and the rule that
sizes it; :mod:`.suite` trains, resumes, and writes the table and the heat map.
"""

from benchmarks.capabilities import (
    adding,
    delayed_recall,
    induction,
    mqar,
    parity,
    selective_copy,
)
from benchmarks.capabilities._task import Batch as Batch
from benchmarks.capabilities._task import Budget as Budget
from benchmarks.capabilities._task import Task as Task

#: Every task, by name, in the table's order.
TASKS = {
    task.name: task
    for task in (
        adding.ADDING_100,
        parity.TASK,
        selective_copy.TASK,
        mqar.TASK,
        delayed_recall.TASK,
        induction.TASK,
        adding.ADDING_1000,  # the longest: last, so a run cut short has the others
    )
}
