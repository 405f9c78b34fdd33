"""The seed's custom-handler example, as written (``EasyRAG.`` spelled ``easyrag.``, and ``Task``
added to the import line: the example annotates with it)."""

from typing import Any, Dict  # noqa: UP035 - the seed's own spelling

from easyrag.task_app.async_task_framework import Task, TaskHandler


class CustomTaskHandler(TaskHandler):
    """自定义任务处理器"""

    def can_handle(self, task_type: str) -> bool:
        return task_type == "CustomTaskHandler"

    async def handle_task(self, task: Task) -> Dict[str, Any]:  # noqa: UP006
        """处理任务的具体实现"""
        try:
            # 获取任务数据
            data = task.task_data

            # 执行任务逻辑
            result = await self._process_custom_task(data)

            return {
                'success': True,
                'result': result,
                'message': '自定义任务完成'
            }

        except Exception as e:
            raise Exception(f"自定义任务失败: {e}")  # noqa: B904

    async def _process_custom_task(self, data: Dict[str, Any]):  # noqa: UP006
        """处理自定义任务的具体逻辑"""
        # 实现具体的任务处理逻辑
        pass

# 注册自定义处理器
from easyrag.task_app.async_task_framework import register_task_handler  # noqa: E402

register_task_handler(CustomTaskHandler)
