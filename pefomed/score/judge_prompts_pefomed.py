"""The LLM-judge prompts PeFoMed released (github jinlHe/PeFoMed, BSD-3-Clause, commit
524244982ba8feaeac8c18176834a33c9ba70890: gpt_eval/gpt_eval_medvqa.py and gpt_eval/gpt_eval_iuxray.py),
verbatim: the exact text its scripts send to GPT-4, indentation, typos and blank lines included,
so `--judge-protocol pefomed-paper` asks what the paper asked. The placeholders are the scripts'
own f-string names. Data, not code: nothing here is executed.

Reproduced under PeFoMed's BSD-3-Clause license; copyright its authors.
"""

# gpt_eval_medvqa.py: "output 1; otherwise output 0", parsed after "Correctness:"
VQA = (
    '\n'
    '                Given a question about an medical image, there is a correct answer to the question and an answer to be determined. If the answer to be determined matches the correct answer or is a good enough answer to the question, output 1; otherwise output 0. Evaluate the answer to be determined (1 or 0).\n'
    '\n'
    '                Question:\n'
    '                - question about the medical image: {question}\n'
    '\n'
    '\n'
    '                Answers:\n'
    '                - correct answer(ground truth): {true_answer}\n'
    '\n'
    '                  answer to be determined: {generated_answer}\n'
    '\n'
    '\n'
    '                Task:\n'
    '\n'
    '                - Given a question about an medical image, there is a correct answer to the question and an answer to be determined. If the answer to be determined matches the correct answer or is a good enough answer to the question, output 1; otherwise output 0. Evaluate the answer to be determined (1 or 0).\n'
    '\n'
    '                Output Format:\n'
    '                Correctness: your answer\n'
    '\n'
    '                '
)

# gpt_eval_iuxray.py: the 0-4 report rubric, parsed after "Score:"
REPORT = (
    '\n'
    '                Given a actual medical report on a medical image and a generated medical report that needs to be determined, evaluate the generated report to be determined (0 or 1 or 2 or 3 or 4).\n'
    '\n'
    '                standard :\n'
    '                4: The generated medical report exhibits minimal discrepancy in meaning compared to the actual  report, ensuring complete consistency in critical aspects such as diagnosis and treatment recommendations. It encapsulates all requisite information elements without omissions.\n'
    '                Applicability: This level is pertinent when evaluators face difficulty distinguishing between the generated and actual medical reports.\n'
    '                3: Generated medical reports closely resemble actual reports in critical elements, albeit with minor deviations that do not compromise the overall accuracy and intelligibility. They maintain alignment with the principal diagnosis and recommendations of the authentic reports, despite possible negligible discrepancies in non-essential information. These reports encompass nearly all vital information, with minimal omissions that do not impede comprehensive understanding.\n'
    "                Applicability: This criterion applies when the generated report's overall quality approximates that of the actual report, albeit with slight variances in detail.\n"
    "                2: The generated report diverges significantly from the actual report in several key aspects, yet its primary content and intent remain recognizable. Despite discrepancies in crucial information, the core diagnosis and recommendations are accurate. Omissions of some information elements have a marginal impact on the report's overall comprehensibility.\n"
    "                Applicability: This level is relevant when the report's foundational structure mirrors that of the actual report, despite a notable quantity and severity of inaccuracies or omissions.\n"
    '                1: The generated report is quite different from the actual report in several key aspects, which affects the basic understanding and use of the reports. There are multiple errors or misleading statements of key information. More important information is left out, affecting the completeness and practicality of the report.\n'
    '                Applicability: Although the report retains some basic framework or content, there are many errors, which affect the overall quality.\n'
    '                0: The generated report hardly has any consistency with the actual report and completely deviates from the correct message or purpose. The information in the report is completely inconsistent with the actual report and is full of errors or irrelevant content. It lacks the necessary information elements to serve as an effective medical report.\n'
    '                Applicability: It is applicable when the content of the report is completely inconsistent with the intended goal and it is almost impossible to identify it as a valid medical report.\n'
    '\n'
    '                actual medical report:\n'
    '                - actual medical report: {ground_truth}\n'
    '\n'
    '\n'
    '               generated medical report:\n'
    '               - generated medical report to be determined: {generated_report}\n'
    '\n'
    '\n'
    '                Task:\n'
    '\n'
    '                - Given a actual medical report on a medical image and a generated medical report that needs to be determined, evaluate the generated report to be determined (0 or 1 or 2 or 3 or 4).\n'
    '\n'
    '                Output Format(Only "Score:" and a rating number can be output):\n'
    '                Score: your answer\n'
    '\n'
    '                '
)
